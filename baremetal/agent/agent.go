// Package agent is the deploy agent that runs in the deploy ramdisk on a
// bare-metal node. It reads its orders from the kernel command line
// (corral.url, corral.node, corral.token, corral.mode), exchanges the
// single-use boot token for its work and a session token (POST
// /agent/claim: corrald refuses a second exchange, an expired token, and
// any request not from the node's DHCP address), reports the node's
// hardware, and then:
//
//   - inspect: reports done;
//   - deploy: streams the raw image from corrald onto the node's disk,
//     checking the stream against the image's SHA-256, flushes it to the
//     device (O_DIRECT when the device allows it, fsync always), reads the
//     written bytes back and reports their digest;
//   - clean, full (the default): erases every disk end to end (discard
//     where the device supports it, then zeroes with BLKZEROOUT, or
//     written when the device cannot), then reads every byte back to
//     verify that it is zero;
//   - clean, quick: wipes the first and last MiB of every disk (partition
//     tables, RAID and LVM metadata live there).
//
// The agent's disk I/O (image copy, erase, verification) runs in the idle
// I/O class (ionice -c3), so that it yields to anything else on the
// device. Every request to corrald is retried with backoff for a few
// minutes, so a corrald restart in the middle of a deploy is survived;
// 401, 403 and 409 are final.
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
	"unsafe"

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

	// work is what the boot token was exchanged for; session its token.
	work types.AgentWork
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
	if err := setIdleIO(); err != nil {
		a.logf("could not lower the I/O priority to idle: %v", err)
	}
	if err := a.claim(ctx); err != nil {
		return err
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
		if a.work.Clean == types.CleanQuick {
			err = a.clean(hw)
		} else {
			err = a.erase(hw)
		}
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
	token := a.work.Token
	if path == "/agent/claim" {
		token = a.Token
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return a.Client.Do(req)
}

// final reports whether corrald's answer ends the agent's work: a refused
// credential (401, 403: expired, replayed, or a newer attempt replaced
// this one) or a node that moved on (409).
func final(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusConflict
}

// claim exchanges the boot token, once, for the work and a session token.
// The exchange is not retried after a refusal: the boot token is
// single-use.
func (a *Agent) claim(ctx context.Context) error {
	return a.retry(ctx, "claim", func() (bool, error) {
		resp, err := a.request(ctx, http.MethodPost, "/agent/claim", nil)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		switch {
		case resp.StatusCode == http.StatusOK:
			var w types.AgentWork
			if err := json.Unmarshal(msg, &w); err != nil || w.Token == "" {
				return false, fmt.Errorf("bad answer to the claim: %q", msg)
			}
			if w.Mode != a.Mode {
				return true, fmt.Errorf("corrald gave %s work, the command line says %s", w.Mode, a.Mode)
			}
			a.work = w
			return false, nil
		case final(resp.StatusCode):
			return true, fmt.Errorf("corrald refused the boot token (%d): %s", resp.StatusCode, strings.TrimSpace(string(msg)))
		}
		return false, fmt.Errorf("claim: corrald answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	})
}

// report sends a report; 401, 403 (a newer attempt replaced this one) and
// 409 are final.
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
		case final(resp.StatusCode):
			return true, fmt.Errorf("corrald refused the report: %s", strings.TrimSpace(string(msg)))
		}
		return false, fmt.Errorf("corrald answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	})
}

// deploy writes the image to the first disk large enough and returns the
// disk, the digest read back and the bytes written.
func (a *Agent) deploy(ctx context.Context, hw types.NodeHardware) (string, string, int64, error) {
	var disk string
	var size, diskSize int64
	err := a.retry(ctx, "download image", func() (bool, error) {
		resp, err := a.request(ctx, http.MethodGet, "/agent/image", nil)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if final(resp.StatusCode) {
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
					disk, diskSize = d.Name, d.SizeBytes
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
	// The bootstrap last: a partition of its own after the image's, so
	// the image's digest above is of what corrald sent.
	if cd := a.work.ConfigDrive; cd != nil {
		part, err := writeConfigDrive(a.path("/dev/"+disk), diskSize, cd, time.Now())
		if err != nil {
			return disk, back, size, fmt.Errorf("config drive on /dev/%s: %w", disk, err)
		}
		a.logf("config drive %s written to partition %d of /dev/%s (%d files)", cd.Label, part, disk, len(cd.Files))
	}
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

// wipe is how much of each end of a disk a quick clean zeroes.
const wipe = 1 << 20

// clean (quick) zeroes the first and last MiB of every disk and flushes.
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

// Linux block-device ioctls (linux/fs.h): _IO(0x12, 119) and
// _IO(0x12, 127); both take a [start, length] pair of uint64 in bytes.
const (
	ioctlBLKDISCARD = 0x1277
	ioctlBLKZEROOUT = 0x127f
)

func blkRange(f *os.File, req uintptr, size int64) error {
	r := [2]uint64{0, uint64(size)}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&r[0]))); errno != 0 {
		return errno
	}
	return nil
}

// erase (full clean) erases every disk end to end and verifies it: the
// device discards its blocks where it supports discard (SSDs and thin
// volumes free them), then is zeroed by BLKZEROOUT (the device's
// write-zeroes command when it has one) or, where that ioctl is missing,
// by writing zeroes; then it is flushed and read back, every byte, and
// must be zero. Discard alone is not trusted to zero.
func (a *Agent) erase(hw types.NodeHardware) error {
	if len(hw.Disks) == 0 {
		return errors.New("no disks found to clean")
	}
	for _, d := range hw.Disks {
		dev := a.path("/dev/" + d.Name)
		f, err := os.OpenFile(dev, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("erase %s: %w", d.Name, err)
		}
		how := "zeroed"
		if b, err := os.ReadFile(a.path("/sys/block/" + d.Name + "/queue/discard_max_bytes")); err == nil && strings.TrimSpace(string(b)) != "0" {
			if err := blkRange(f, ioctlBLKDISCARD, d.SizeBytes); err == nil {
				how = "discarded and zeroed"
			}
		}
		if err := blkRange(f, ioctlBLKZEROOUT, d.SizeBytes); err != nil {
			f.Close()
			if err := zeroFill(dev, d.SizeBytes); err != nil {
				return fmt.Errorf("erase %s: %w", d.Name, err)
			}
			how = "written with zeroes"
		} else {
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("erase %s: fsync: %w", d.Name, err)
			}
			f.Close()
		}
		if err := verifyZero(dev, d.SizeBytes); err != nil {
			return fmt.Errorf("erase %s: verify: %w", d.Name, err)
		}
		a.logf("erased /dev/%s end to end (%d bytes %s) and verified that it reads back zeroes", d.Name, d.SizeBytes, how)
	}
	return nil
}

// zeroFill writes zeroes over the first size bytes of the device, in
// whole blocks with O_DIRECT where allowed, and flushes.
func zeroFill(dev string, size int64) error {
	f, _, err := openDirect(dev, os.O_WRONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	buf, free, err := alignedBuffer(blockSize)
	if err != nil {
		return err
	}
	defer free()
	clear(buf)
	for off := int64(0); off < size; {
		n := min(int64(blockSize), size-off)
		if n < blockSize {
			// A partial block cannot go out with O_DIRECT.
			g, err := os.OpenFile(dev, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = g.WriteAt(buf[:n], off)
			if serr := g.Sync(); err == nil {
				err = serr
			}
			g.Close()
			if err != nil {
				return fmt.Errorf("write at %d: %w", off, err)
			}
		} else if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		off += n
	}
	return f.Sync()
}

// verifyZero reads the first size bytes of the device, past the page
// cache where O_DIRECT is allowed, and fails at the first non-zero byte.
func verifyZero(dev string, size int64) error {
	f, direct, err := openDirect(dev, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	buf, free, err := alignedBuffer(blockSize)
	if err != nil {
		return err
	}
	defer free()
	zero := make([]byte, blockSize)
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf, off)
		if n == 0 && err != nil {
			if direct && errors.Is(err, syscall.EINVAL) {
				// The tail is not a whole block: read it buffered.
				g, gerr := os.Open(dev)
				if gerr != nil {
					return gerr
				}
				defer g.Close()
				f, direct = g, false
				continue
			}
			return fmt.Errorf("read at %d: %w", off, err)
		}
		take := min(int64(n), size-off)
		if !bytes.Equal(buf[:take], zero[:take]) {
			i := 0
			for buf[i] == 0 {
				i++
			}
			return fmt.Errorf("byte %d is not zero after the erase", off+int64(i))
		}
		off += take
	}
	return nil
}

// setIdleIO puts every thread of the agent in the idle I/O class (like
// ionice -c3): ioprio_set(2) with IOPRIO_WHO_PROCESS sets one thread, and
// threads started later inherit it from the thread that starts them.
func setIdleIO() error {
	const (
		ioprioWhoProcess = 1
		ioprioIdle       = 3 << 13 // class 3, shifted by IOPRIO_CLASS_SHIFT
	)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioIdle); errno != 0 && errno != syscall.ESRCH {
			return errno
		}
	}
	return nil
}
