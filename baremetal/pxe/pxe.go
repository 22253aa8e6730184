// Package pxe is corrald's side of the provisioning network: it runs
// Debian's dnsmasq for DHCP (enrolled MACs only), router advertisements
// and TFTP (undionly.kpxe for NICs without iPXE), and serves over HTTP the
// iPXE scripts, the deploy ramdisk, the raw images, and the deploy agent's
// reports.
//
// Why dnsmasq and not a Go DHCP library: it is packaged and maintained by
// Debian (security updates), does DHCPv4, TFTP and the IPv6 router
// advertisements iPXE needs in one small process, reloads its host list on
// SIGHUP without dropping leases, and is what operators already know.
package pxe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal"
)

// Config configures the provisioning network service.
type Config struct {
	// Interface is the provisioning network's interface (a bridge or NIC)
	// and Address corrald's IPv4 address on it; Subnet its subnet.
	Interface string
	Address   net.IP
	Subnet    *net.IPNet
	// HTTPPort is where the HTTP server listens on Address (default 8089).
	HTTPPort int
	// RamdiskDir holds vmlinuz and initrd.gz of the deploy ramdisk
	// (baremetal/ramdisk/build.sh).
	RamdiskDir string
	// ImageDir is corrald's image store (one file per image ID).
	ImageDir string
	// StateDir keeps dnsmasq's files and the raw image cache.
	StateDir string
	// TFTPRoot holds undionly.kpxe (default /usr/lib/ipxe).
	TFTPRoot string
	// Dnsmasq is the dnsmasq binary (default "dnsmasq").
	Dnsmasq string
	// LeaseFile is dnsmasq's lease file (default StateDir/leases): a boot
	// token goes only to the address leased to the node's MAC.
	LeaseFile string
	// OnReport is called after an agent's report was recorded (to wake the
	// conductor).
	OnReport func()
	// Bootstrap renders a deployed node's first-boot configuration,
	// which the deploy agent writes as a config drive (default
	// baremetal.CloudInit, NoCloud layout).
	Bootstrap baremetal.Bootstrapper
	Logger    *slog.Logger
}

// Store is what the service needs of the store.
type Store interface {
	baremetal.NodeStore
	NodeByMAC(ctx context.Context, mac string) (store.NodeRow, error)
	SetNodeProvisionIP(ctx context.Context, id, ip string) error
}

var _ Store = (*store.Store)(nil)

// Service is the provisioning network. It implements
// baremetal.Provisioner.
type Service struct {
	cfg   Config
	store Store
	keys  *baremetal.Keyring
	log   *slog.Logger
	base  string // http://address:port

	mu      sync.Mutex // hosts file, dnsmasq process
	hosts   string
	dnsmasq *os.Process

	imgMu sync.Mutex
	imgs  map[string]*sync.Mutex

	refusedMu sync.Mutex
	refused   map[string]time.Time // node → last refusal recorded in its history
}

var _ baremetal.Provisioner = (*Service)(nil)

// New returns a service; Run starts it.
func New(cfg Config, st Store, keys *baremetal.Keyring) (*Service, error) {
	if cfg.Interface == "" || cfg.Address == nil || cfg.Subnet == nil {
		return nil, errors.New("pxe: interface, address and subnet are required")
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8089
	}
	if cfg.TFTPRoot == "" {
		cfg.TFTPRoot = "/usr/lib/ipxe"
	}
	if cfg.Dnsmasq == "" {
		cfg.Dnsmasq = "dnsmasq"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Bootstrap == nil {
		cfg.Bootstrap = baremetal.CloudInit{}
	}
	if cfg.LeaseFile == "" {
		cfg.LeaseFile = filepath.Join(cfg.StateDir, "leases")
	}
	for _, f := range []string{"vmlinuz", "initrd.gz"} {
		if _, err := os.Stat(filepath.Join(cfg.RamdiskDir, f)); err != nil {
			return nil, fmt.Errorf("pxe: deploy ramdisk: %w (build it with baremetal/ramdisk/build.sh)", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "images"), 0o750); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	return &Service{cfg: cfg, store: st, keys: keys, log: cfg.Logger, imgs: map[string]*sync.Mutex{}, refused: map[string]time.Time{},
		base: fmt.Sprintf("http://%s", net.JoinHostPort(cfg.Address.String(), fmt.Sprint(cfg.HTTPPort)))}, nil
}

// BaseURL is the HTTP server's URL on the provisioning network.
func (s *Service) BaseURL() string { return s.base }

func (s *Service) path(name string) string { return filepath.Join(s.cfg.StateDir, name) }

// Run serves HTTP and supervises dnsmasq until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Refresh(ctx); err != nil {
		return err
	}
	conf := baremetal.Dnsmasq(baremetal.DnsmasqConfig{Interface: s.cfg.Interface, Subnet: s.cfg.Subnet,
		BootURL: s.base + "/boot.ipxe", TFTPRoot: s.cfg.TFTPRoot, HostsFile: s.path("hosts"), LeaseFile: s.cfg.LeaseFile,
		PIDFile: s.path("dnsmasq.pid"), LogFile: s.path("dnsmasq.log")})
	if err := os.WriteFile(s.path("dnsmasq.conf"), []byte(conf), 0o640); err != nil {
		return fmt.Errorf("pxe: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Address.String(), fmt.Sprint(s.cfg.HTTPPort)))
	if err != nil {
		return fmt.Errorf("pxe: http: %w", err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	s.killStale()
	s.superviseDnsmasq(ctx)
	return nil
}

// killStale stops a dnsmasq left by a corrald that was killed: it holds
// the DHCP socket on the interface.
func (s *Service) killStale() {
	b, err := os.ReadFile(s.path("dnsmasq.pid"))
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		return
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.Contains(string(cmd), s.path("dnsmasq.conf")) {
		syscall.Kill(pid, syscall.SIGTERM)
		for range 30 {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// superviseDnsmasq keeps dnsmasq running until ctx ends, restarting it
// with backoff when it exits.
func (s *Service) superviseDnsmasq(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		cmd := exec.Command(s.cfg.Dnsmasq, "--keep-in-foreground", "--conf-file="+s.path("dnsmasq.conf"))
		out, _ := os.OpenFile(s.path("dnsmasq.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			s.log.Error("start dnsmasq", "error", err)
		} else {
			s.mu.Lock()
			s.dnsmasq = cmd.Process
			s.mu.Unlock()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				s.log.Error("dnsmasq exited; restarting", "error", err, "log", s.path("dnsmasq.out"))
			case <-ctx.Done():
				cmd.Process.Signal(syscall.SIGTERM)
				<-done
			}
			s.mu.Lock()
			s.dnsmasq = nil
			s.mu.Unlock()
		}
		if out != nil {
			out.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Refresh implements baremetal.Provisioner: it assigns provisioning
// addresses to nodes without one, rewrites the hosts file and makes
// dnsmasq re-read it (SIGHUP) when it changed.
func (s *Service) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, err := s.store.ListNodeRows(ctx)
	if err != nil {
		return err
	}
	used := map[string]bool{s.cfg.Address.String(): true}
	for _, r := range rows {
		used[r.ProvisionIP] = true
	}
	var hosts []baremetal.DHCPHost
	for _, r := range rows {
		if r.ProvisionIP == "" {
			ip, err := s.freeIP(used)
			if err != nil {
				return err
			}
			if err := s.store.SetNodeProvisionIP(ctx, r.ID, ip); err != nil {
				return err
			}
			used[ip], r.ProvisionIP = true, ip
		}
		if macs := r.MACList(); len(macs) > 0 {
			hosts = append(hosts, baremetal.DHCPHost{MAC: macs[0], IP: r.ProvisionIP})
		}
	}
	text := baremetal.DHCPHosts(hosts)
	if text == s.hosts {
		return nil
	}
	if err := writeAtomic(s.path("hosts"), []byte(text)); err != nil {
		return err
	}
	s.hosts = text
	if s.dnsmasq != nil {
		s.dnsmasq.Signal(syscall.SIGHUP)
	}
	return nil
}

// freeIP returns the first address of the subnet (from .10) not in used.
func (s *Service) freeIP(used map[string]bool) (string, error) {
	base := s.cfg.Subnet.IP.To4()
	ones, bits := s.cfg.Subnet.Mask.Size()
	size := 1 << (bits - ones)
	for i := 10; i < size-1; i++ {
		ip := net.IPv4(base[0], base[1], base[2], base[3]+byte(i)).String()
		if !used[ip] {
			return ip, nil
		}
	}
	return "", fmt.Errorf("pxe: no free address left in %s", s.cfg.Subnet)
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// rawPath is the raw image cache file of an image.
func (s *Service) rawPath(id string) string {
	return filepath.Join(s.cfg.StateDir, "images", id+".raw")
}

// PrepareImage implements baremetal.Provisioner: a raw image is used as
// it is; a qcow2 image is converted to raw once (qemu-img convert), since
// the agent writes the disk block for block. The raw file's SHA-256 is
// kept next to it: the agent checks what it received and read back.
func (s *Service) PrepareImage(ctx context.Context, img types.Image) error {
	s.imgMu.Lock()
	mu, ok := s.imgs[img.ID]
	if !ok {
		mu = &sync.Mutex{}
		s.imgs[img.ID] = mu
	}
	s.imgMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	raw := s.rawPath(img.ID)
	if _, err := os.Stat(raw + ".sha256"); err == nil {
		return nil
	}
	src := filepath.Join(s.cfg.ImageDir, img.ID)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("image data: %w", err)
	}
	tmp := raw + ".tmp"
	defer os.Remove(tmp)
	if img.DiskFormat == "qcow2" {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(cctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", src, tmp).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
		}
	} else if err := copyFile(src, tmp); err != nil {
		return err
	}
	sum, err := fileSHA256(tmp)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, raw); err != nil {
		return err
	}
	return writeAtomic(raw+".sha256", []byte(sum+"\n"))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// rawSHA256 returns the digest of a prepared raw image.
func (s *Service) rawSHA256(id string) (string, error) {
	b, err := os.ReadFile(s.rawPath(id) + ".sha256")
	if err != nil {
		return "", fmt.Errorf("image %s is not prepared: %w", id, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Lease returns the address dnsmasq leased to a MAC and has not expired,
// from its lease file ("expiry MAC IP hostname client-id" per line; expiry
// 0 is infinite), or "".
func (s *Service) Lease(mac string) string {
	b, err := os.ReadFile(s.cfg.LeaseFile)
	if err != nil {
		return ""
	}
	return leaseIP(string(b), mac, time.Now())
}

func leaseIP(file, mac string, now time.Time) string {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(file, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		hw, err := net.ParseMAC(f[1])
		if err != nil || hw.String() != want.String() {
			continue
		}
		var exp int64
		if _, err := fmt.Sscan(f[0], &exp); err != nil || (exp != 0 && exp <= now.Unix()) {
			continue
		}
		if ip := net.ParseIP(f[2]); ip != nil {
			return ip.String()
		}
	}
	return ""
}

// source returns the request's source address.
func source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}

// refuse logs a refused deploy credential with the node, and records it
// in the node's history at most once a minute per node (refusals are the
// requests an attacker controls, so the history must not grow with them).
func (s *Service) refuse(ctx context.Context, row store.NodeRow, what, src string, err error) {
	s.log.Warn("deploy credential refused", "node", row.ID, "name", row.Name, "state", row.State, "request", what,
		"source", src, "reason", err)
	now := time.Now()
	s.refusedMu.Lock()
	last, seen := s.refused[row.ID]
	if !seen || now.Sub(last) >= time.Minute {
		s.refused[row.ID] = now
		if len(s.refused) > 10000 {
			clear(s.refused)
		}
	}
	s.refusedMu.Unlock()
	if seen && now.Sub(last) < time.Minute {
		return
	}
	reason := fmt.Sprintf("%s from %s refused: %v", what, src, err)
	if e := s.store.NodeEvent(context.WithoutCancel(ctx), row.ID, row.State, "credential refused", reason, "pxe"); e != nil {
		s.log.Error("record refusal", "node", row.ID, "error", e)
	}
}

// Handler serves the provisioning network's HTTP endpoints:
//
//	GET  /boot.ipxe            the chain script DHCP hands iPXE
//	GET  /ipxe?mac=MAC         the node's script: the ramdisk, or exit to disk
//	GET  /ramdisk/vmlinuz, /ramdisk/initrd.gz
//	POST /agent/claim?node=ID  the agent's work, once, for its boot token
//	GET  /agent/image?node=ID  the raw image being deployed (session token)
//	POST /agent/report?node=ID the agent's report (session token)
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, baremetal.IPXEChain(s.base))
	})
	mux.HandleFunc("GET /ipxe", s.nodeScript)
	mux.HandleFunc("GET /ramdisk/{file}", func(w http.ResponseWriter, r *http.Request) {
		f := r.PathValue("file")
		if f != "vmlinuz" && f != "initrd.gz" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(s.cfg.RamdiskDir, f))
	})
	mux.HandleFunc("POST /agent/claim", s.agentClaim)
	mux.HandleFunc("GET /agent/image", s.agentImage)
	mux.HandleFunc("POST /agent/report", s.agentReport)
	return mux
}

func (s *Service) nodeScript(w http.ResponseWriter, r *http.Request) {
	hw, err := net.ParseMAC(r.URL.Query().Get("mac"))
	if err != nil {
		http.Error(w, "#!ipxe\necho corral: bad MAC\nexit\n", http.StatusBadRequest)
		return
	}
	row, err := s.store.NodeByMAC(r.Context(), hw.String())
	if err != nil {
		s.log.Warn("iPXE request from an unknown MAC", "mac", hw.String(), "error", err)
		io.WriteString(w, "#!ipxe\necho corral: this MAC is not enrolled\nexit\n")
		return
	}
	mode := baremetal.AgentMode(row.State)
	if mode == "" || (row.Step != baremetal.StepBooting && row.Step != baremetal.StepWaitAgent) {
		io.WriteString(w, baremetal.IPXELocal(row.Name, row.State))
		return
	}
	// The boot token goes only to the address dnsmasq leased to the MAC.
	// iPXE asks right after its DHCP exchange: give dnsmasq a moment to
	// write the lease before deciding the source is wrong.
	src, leased := source(r), s.Lease(hw.String())
	for i := 0; leased != src && i < 10 && r.Context().Err() == nil; i++ {
		time.Sleep(200 * time.Millisecond)
		leased = s.Lease(hw.String())
	}
	token, err := baremetal.BootToken(row, s.keys, src, leased, time.Now())
	if err != nil {
		if !errors.Is(err, baremetal.ErrNotProvisioning) {
			s.refuse(r.Context(), row, "iPXE script", src, err)
		}
		io.WriteString(w, baremetal.IPXELocal(row.Name, row.State))
		return
	}
	io.WriteString(w, baremetal.IPXERamdisk(baremetal.RamdiskBoot{BaseURL: s.base, NodeID: row.ID, Name: row.Name,
		State: row.State, Mode: mode, Token: token}))
}

// credentialStatus is the HTTP status of a refused credential.
func credentialStatus(err error) int {
	if errors.Is(err, baremetal.ErrTokenExpired) {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// agentClaim exchanges a boot token, once, for the agent's work and its
// session token.
func (s *Service) agentClaim(w http.ResponseWriter, r *http.Request) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	src := source(r)
	row, err := s.store.GetNodeRow(r.Context(), r.URL.Query().Get("node"))
	if err != nil {
		s.log.Warn("deploy credential refused", "node", r.URL.Query().Get("node"), "request", "claim", "source", src, "reason", err)
		http.Error(w, "unknown node or token not current", http.StatusForbidden)
		return
	}
	var drive *types.ConfigDrive
	if row.State == types.NodeDeploying && row.ServerID != "" && token != "" {
		// The bootstrap is read at the start of the deploy, before the
		// token is spent (an error here leaves the agent to retry): the
		// server's ports change only while it is building
		// (docs/baremetal.md). It is sent only if the claim succeeds.
		b, err := baremetal.NodeBootstrap(r.Context(), s.store, row)
		if err == nil {
			drive, err = s.cfg.Bootstrap.ConfigDrive(r.Context(), b)
		}
		if err != nil {
			s.log.Error("render the config drive", "node", row.ID, "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}
	work, err := baremetal.ClaimWork(r.Context(), s.store, s.keys, row.ID, token, src, s.Lease)
	if err != nil {
		var se *store.NodeStateError
		if !errors.Is(err, baremetal.ErrBadToken) && !errors.Is(err, baremetal.ErrTokenUsed) && !errors.Is(err, baremetal.ErrTokenExpired) &&
			!errors.Is(err, baremetal.ErrWrongSource) && !errors.As(err, &se) {
			s.log.Error("claim", "node", row.ID, "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		s.refuse(r.Context(), row, "claim", src, err)
		http.Error(w, "deploy token refused: "+refusal(err), credentialStatus(err))
		return
	}
	work.ConfigDrive = drive
	s.log.Info("deploy agent claimed its work", "node", row.ID, "mode", work.Mode, "source", src)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(work)
}

// refusal says why a credential was refused, without echoing secrets or
// addresses to the caller.
func refusal(err error) string {
	for _, e := range []error{baremetal.ErrTokenUsed, baremetal.ErrTokenExpired, baremetal.ErrWrongSource} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return baremetal.ErrBadToken.Error()
}

// agentNode checks the request's node and session token.
func (s *Service) agentNode(w http.ResponseWriter, r *http.Request, what string) (store.NodeRow, string, bool) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	src := source(r)
	row, err := s.store.GetNodeRow(r.Context(), r.URL.Query().Get("node"))
	if err != nil {
		s.log.Warn("deploy credential refused", "node", r.URL.Query().Get("node"), "request", what, "source", src, "reason", err)
		http.Error(w, "unknown node or token not current", http.StatusForbidden)
		return row, "", false
	}
	if err := baremetal.CheckAgentSession(row, s.keys, token, src, time.Now()); err != nil {
		s.refuse(r.Context(), row, what, src, err)
		http.Error(w, "deploy token refused: "+refusal(err), credentialStatus(err))
		return row, "", false
	}
	return row, token, true
}

func (s *Service) agentImage(w http.ResponseWriter, r *http.Request) {
	row, _, ok := s.agentNode(w, r, "image")
	if !ok {
		return
	}
	if row.State != types.NodeDeploying {
		http.Error(w, "node is not deploying", http.StatusConflict)
		return
	}
	sum, err := s.rawSHA256(row.ImageID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	f, err := os.Open(s.rawPath(row.ImageID))
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer f.Close()
	fi, _ := f.Stat()
	w.Header().Set("X-Checksum-Sha256", sum)
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func (s *Service) agentReport(w http.ResponseWriter, r *http.Request) {
	row, token, ok := s.agentNode(w, r, "report")
	if !ok {
		return
	}
	var rep types.AgentReport
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&rep); err != nil {
		http.Error(w, "bad report: "+err.Error(), http.StatusBadRequest)
		return
	}
	if rep.Done && rep.OK && rep.Mode == types.AgentDeploy {
		// Trust, but verify: the digest the agent read back from the disk
		// must be the raw image's.
		want, err := s.rawSHA256(row.ImageID)
		if err != nil || rep.SHA256 != want {
			rep.OK, rep.Error = false, fmt.Sprintf("the disk's checksum %s is not the image's %s", rep.SHA256, want)
		}
	}
	if _, err := baremetal.ApplyAgentReport(r.Context(), s.store, s.keys, row.ID, token, source(r), rep); err != nil {
		status := http.StatusConflict
		if errors.Is(err, baremetal.ErrBadToken) || errors.Is(err, baremetal.ErrWrongSource) || errors.Is(err, baremetal.ErrTokenExpired) {
			status = credentialStatus(err)
		}
		http.Error(w, err.Error(), status)
		return
	}
	s.log.Info("deploy agent report", "node", row.ID, "mode", rep.Mode, "done", rep.Done, "ok", rep.OK, "error", rep.Error)
	if s.cfg.OnReport != nil {
		s.cfg.OnReport()
	}
	w.WriteHeader(http.StatusNoContent)
}

// SetOnReport sets the function called after each recorded agent report.
// Call it before Run.
func (s *Service) SetOnReport(fn func()) { s.cfg.OnReport = fn }
