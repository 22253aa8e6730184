// Package agent is the deploy agent that runs in the deploy ramdisk on a
// bare-metal node. It reads its orders from the kernel command line
// (corral.url, corral.node, corral.token, corral.mode), reports the node's
// hardware, and then:
//
//   - inspect: reports done;
//   - deploy: streams the raw image from corrald onto the node's disk,
//     checking the stream against the image's SHA-256, flushes it to the
//     device (O_DIRECT when the device allows it, fsync always), reads the
//     written bytes back and reports their digest;
//   - clean: wipes the first and last MiB of every disk (partition tables,
//     RAID and LVM metadata live there), which is what a node needs before
//     its next tenant; a full erase is far slower and left to operators.
//
// Every request to corrald is retried with backoff for a few minutes, so
// a corrald restart in the middle of a deploy is survived.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Orders are what corrald asks, from the kernel command line.
type Orders struct {
	URL, Node, Token, Mode string
}

// ParseCmdline reads the orders from a kernel command line.
func ParseCmdline(cmdline string) (Orders, error) {
	var o Orders
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "corral.url":
			o.URL = v
		case "corral.node":
			o.Node = v
		case "corral.token":
			o.Token = v
		case "corral.mode":
			o.Mode = v
		}
	}
	if o.URL == "" || o.Node == "" || o.Token == "" || o.Mode == "" {
		return o, errors.New("kernel command line lacks corral.url, corral.node, corral.token or corral.mode")
	}
	return o, nil
}

// Agent does the work of one boot.
type Agent struct {
	Orders
	// Root prefixes /proc, /sys and /dev (tests point it at a fake tree).
	Root string
	// Log receives progress lines (the console).
	Log io.Writer
	// Client talks to corrald.
	Client *http.Client
	// RetryFor bounds the retries of each request (default 5 minutes).
	RetryFor time.Duration
}

func (a *Agent) logf(format string, args ...any) {
	fmt.Fprintf(a.Log, "corral-deploy: "+format+"\n", args...)
}

// Run does the work and reports the result. It returns an error only when
// even the failure could not be reported.
func (a *Agent) Run(ctx context.Context) error {
	if a.Client == nil {
		a.Client = &http.Client{Timeout: 0}
	}
	if a.RetryFor == 0 {
		a.RetryFor = 5 * time.Minute
	}
	hw := a.Hardware()
	a.logf("node %s: %s; %d cpus, %d MiB, disks %v", a.Node, a.Mode, hw.CPUs, hw.RAMMiB, hw.Disks)
	rep := types.AgentReport{Mode: a.Mode, Hardware: hw, MACs: a.MACs()}
	if err := a.report(ctx, rep); err != nil {
		return err
	}
	var err error
	switch a.Mode {
	case types.AgentInspect:
	case types.AgentDeploy:
		rep.Disk, rep.SHA256, rep.Bytes, err = a.deploy(ctx, hw)
	case types.AgentClean:
		err = a.clean(hw)
	default:
		err = fmt.Errorf("unknown mode %q", a.Mode)
	}
	rep.Done, rep.OK = true, err == nil
	if err != nil {
		rep.Error = err.Error()
		a.logf("FAILED: %v", err)
	}
	if rerr := a.report(ctx, rep); rerr != nil {
		return rerr
	}
	a.logf("CORRAL-DEPLOY-DONE mode=%s ok=%v", a.Mode, rep.OK)
	return nil
}

func (a *Agent) path(p string) string { return filepath.Join(a.Root, p) }

// Hardware reads the CPUs, memory and disks.
func (a *Agent) Hardware() types.NodeHardware {
	var hw types.NodeHardware
	if b, err := os.ReadFile(a.path("/proc/cpuinfo")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch strings.TrimSpace(k) {
			case "processor":
				hw.CPUs++
			case "model name":
				hw.CPUModel = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile(a.path("/proc/meminfo")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				hw.RAMMiB = kb / 1024
			}
		}
	}
	entries, _ := os.ReadDir(a.path("/sys/block"))
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "sr") || strings.HasPrefix(n, "zram") {
			continue
		}
		b, err := os.ReadFile(a.path("/sys/block/" + n + "/size"))
		if err != nil {
			continue
		}
		sectors, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if sectors > 0 {
			hw.Disks = append(hw.Disks, types.NodeDisk{Name: n, SizeBytes: sectors * 512})
		}
	}
	sort.Slice(hw.Disks, func(i, j int) bool { return hw.Disks[i].Name < hw.Disks[j].Name })
	return hw
}

// MACs lists the NICs' addresses.
func (a *Agent) MACs() []string {
	var out []string
	entries, _ := os.ReadDir(a.path("/sys/class/net"))
	for _, e := range entries {
		if e.Name() == "lo" {
			continue
		}
		if b, err := os.ReadFile(a.path("/sys/class/net/" + e.Name() + "/address")); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// retry runs fn until it succeeds, fails permanently, or RetryFor passes.
func (a *Agent) retry(ctx context.Context, what string, fn func() (permanent bool, err error)) error {
	deadline := time.Now().Add(a.RetryFor)
	backoff := time.Second
	for {
		permanent, err := fn()
		if err == nil || permanent || time.Now().After(deadline) {
			return err
		}
		a.logf("%s: %v; retrying in %s", what, err, backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 15*time.Second)
	}
}

func (a *Agent) request(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path+"?node="+a.Node, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return a.Client.Do(req)
}

// report sends a report; 403 (a newer attempt replaced this one) and 409
// are final.
func (a *Agent) report(ctx context.Context, rep types.AgentReport) error {
	body, _ := json.Marshal(rep)
	return a.retry(ctx, "report", func() (bool, error) {
		resp, err := a.request(ctx, http.MethodPost, "/agent/report", body)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		switch {
		case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
			return false, nil
		case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusConflict:
			return true, fmt.Errorf("corrald refused the report: %s", strings.TrimSpace(string(msg)))
		}
		return false, fmt.Errorf("corrald answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	})
}

// deploy writes the image to the first disk large enough and returns the
// disk, the digest read back and the bytes written.
func (a *Agent) deploy(ctx context.Context, hw types.NodeHardware) (string, string, int64, error) {
	var disk string
	var size int64
	err := a.retry(ctx, "download image", func() (bool, error) {
		resp, err := a.request(ctx, http.MethodGet, "/agent/image", nil)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusConflict {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return true, fmt.Errorf("corrald refused the image: %s", strings.TrimSpace(string(msg)))
		}
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("image: corrald answered %d", resp.StatusCode)
		}
		want := resp.Header.Get("X-Checksum-Sha256")
		size = resp.ContentLength
		if disk == "" {
			for _, d := range hw.Disks {
				if d.SizeBytes >= size {
					disk = d.Name
					break
				}
			}
			if disk == "" {
				return true, fmt.Errorf("no disk holds the %d-byte image (disks %v)", size, hw.Disks)
			}
		}
		a.logf("writing %d bytes to /dev/%s", size, disk)
		got, n, err := writeDisk(a.path("/dev/"+disk), resp.Body)
		if err != nil {
			return false, err // a cut stream (corrald restarting): try again
		}
		if n != size || got != want {
			return false, fmt.Errorf("received %d bytes with sha256 %s, want %d bytes with %s", n, got, size, want)
		}
		return false, nil
	})
	if err != nil {
		return disk, "", 0, err
	}
	back, err := readBack(a.path("/dev/"+disk), size)
	if err != nil {
		return disk, "", size, fmt.Errorf("read back /dev/%s: %w", disk, err)
	}
	a.logf("written and read back: sha256 %s", back)
	return disk, back, size, nil
}

// blockSize is the unit of direct I/O.
const blockSize = 1 << 20

// alignedBuffer returns a page-aligned buffer for O_DIRECT.
func alignedBuffer(n int) ([]byte, func(), error) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { syscall.Munmap(b) }, nil
}

// openDirect opens a device for direct I/O, falling back to buffered I/O
// where the file system refuses O_DIRECT (fsync then does the flushing).
func openDirect(path string, flag int) (*os.File, bool, error) {
	f, err := os.OpenFile(path, flag|syscall.O_DIRECT, 0)
	if err == nil {
		return f, true, nil
	}
	f, err = os.OpenFile(path, flag, 0)
	return f, false, err
}

// writeDisk streams r onto the device, returning the stream's digest and
// length. Whole blocks go out with O_DIRECT; the tail (if the image is
// not a whole number of blocks) with a buffered write; then fsync.
func writeDisk(dev string, r io.Reader) (string, int64, error) {
	f, direct, err := openDirect(dev, os.O_WRONLY)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	buf, free, err := alignedBuffer(blockSize)
	if err != nil {
		return "", 0, err
	}
	defer free()
	h := sha256.New()
	var off int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			h.Write(buf[:n])
			if n == blockSize || !direct {
				if _, err := f.WriteAt(buf[:n], off); err != nil {
					return "", off, fmt.Errorf("write at %d: %w", off, err)
				}
			} else {
				// A partial block cannot go out with O_DIRECT.
				g, err := os.OpenFile(dev, os.O_WRONLY, 0)
				if err != nil {
					return "", off, err
				}
				_, err = g.WriteAt(buf[:n], off)
				if serr := g.Sync(); err == nil {
					err = serr
				}
				g.Close()
				if err != nil {
					return "", off, fmt.Errorf("write tail at %d: %w", off, err)
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return "", off, rerr
		}
	}
	if err := f.Sync(); err != nil {
		return "", off, fmt.Errorf("fsync: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), off, nil
}

// readBack hashes the first size bytes of the device, bypassing the page
// cache where O_DIRECT is allowed.
func readBack(dev string, size int64) (string, error) {
	f, direct, err := openDirect(dev, os.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf, free, err := alignedBuffer(blockSize)
	if err != nil {
		return "", err
	}
	defer free()
	h := sha256.New()
	var off int64
	for off < size {
		n, err := f.ReadAt(buf, off)
		if n == 0 && err != nil {
			if direct && errors.Is(err, syscall.EINVAL) {
				return readBackBuffered(dev, size, h, off)
			}
			return "", err
		}
		take := min(int64(n), size-off)
		h.Write(buf[:take])
		off += take
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readBackBuffered(dev string, size int64, h interface{ Write([]byte) (int, error) }, off int64) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, size-off)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.(interface{ Sum([]byte) []byte }).Sum(nil)), nil
}

// wipe is how much of each end of a disk cleaning zeroes.
const wipe = 1 << 20

// clean zeroes the first and last MiB of every disk and flushes.
func (a *Agent) clean(hw types.NodeHardware) error {
	if len(hw.Disks) == 0 {
		return errors.New("no disks found to clean")
	}
	zero := make([]byte, wipe)
	for _, d := range hw.Disks {
		f, err := os.OpenFile(a.path("/dev/"+d.Name), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("clean %s: %w", d.Name, err)
		}
		offs := []int64{0}
		if d.SizeBytes > 2*wipe {
			offs = append(offs, d.SizeBytes-wipe)
		}
		for _, off := range offs {
			if _, err := f.WriteAt(zero, off); err != nil {
				f.Close()
				return fmt.Errorf("clean %s at %d: %w", d.Name, off, err)
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("clean %s: fsync: %w", d.Name, err)
		}
		f.Close()
		a.logf("wiped the first and last MiB of /dev/%s", d.Name)
	}
	return nil
}
