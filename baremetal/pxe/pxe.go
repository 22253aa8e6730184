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
	// OnReport is called after an agent's report was recorded (to wake the
	// conductor).
	OnReport func()
	Logger   *slog.Logger
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
	for _, f := range []string{"vmlinuz", "initrd.gz"} {
		if _, err := os.Stat(filepath.Join(cfg.RamdiskDir, f)); err != nil {
			return nil, fmt.Errorf("pxe: deploy ramdisk: %w (build it with baremetal/ramdisk/build.sh)", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "images"), 0o750); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	return &Service{cfg: cfg, store: st, keys: keys, log: cfg.Logger, imgs: map[string]*sync.Mutex{},
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
		BootURL: s.base + "/boot.ipxe", TFTPRoot: s.cfg.TFTPRoot, HostsFile: s.path("hosts"), LeaseFile: s.path("leases"),
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

// Handler serves the provisioning network's HTTP endpoints:
//
//	GET  /boot.ipxe            the chain script DHCP hands iPXE
//	GET  /ipxe?mac=MAC         the node's script: the ramdisk, or exit to disk
//	GET  /ramdisk/vmlinuz, /ramdisk/initrd.gz
//	GET  /agent/image?node=ID  the raw image being deployed (Bearer token)
//	POST /agent/report?node=ID the agent's report (Bearer token)
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
	token, terr := s.keys.Open(row.AgentToken)
	if mode == "" || row.AgentToken == "" || terr != nil || (row.Step != baremetal.StepBooting && row.Step != baremetal.StepWaitAgent) {
		io.WriteString(w, baremetal.IPXELocal(row.Name, row.State))
		return
	}
	io.WriteString(w, baremetal.IPXERamdisk(baremetal.RamdiskBoot{BaseURL: s.base, NodeID: row.ID, Name: row.Name,
		State: row.State, Mode: mode, Token: token}))
}

// agentNode checks the request's node and token.
func (s *Service) agentNode(w http.ResponseWriter, r *http.Request) (store.NodeRow, string, bool) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	row, err := s.store.GetNodeRow(r.Context(), r.URL.Query().Get("node"))
	if err == nil {
		err = baremetal.CheckAgentToken(row, s.keys, token)
	}
	if err != nil {
		http.Error(w, "unknown node or token not current", http.StatusForbidden)
		return row, "", false
	}
	return row, token, true
}

func (s *Service) agentImage(w http.ResponseWriter, r *http.Request) {
	row, _, ok := s.agentNode(w, r)
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
	row, token, ok := s.agentNode(w, r)
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
	if _, err := baremetal.ApplyAgentReport(r.Context(), s.store, s.keys, row.ID, token, rep); err != nil {
		status := http.StatusConflict
		if errors.Is(err, baremetal.ErrBadToken) {
			status = http.StatusForbidden
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
