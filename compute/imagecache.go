package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// Fetcher opens an image's data (from corrald).
type Fetcher func(ctx context.Context, imageID string) (io.ReadCloser, error)

// ErrChecksum means downloaded data did not match the image's sha256.
var ErrChecksum = errors.New("image checksum mismatch")

// ImageCache keeps each image once per host, named by its sha256, so a
// second guest of an image starts without a download. Downloads stream to
// a temporary file under the idle I/O class, are checked against the
// image's sha256, and only then renamed into place: a failed or corrupted
// download (or a full disk) leaves the cache as it was.
type ImageCache struct {
	dir      string
	maxBytes int64
	fetch    Fetcher

	mu       sync.Mutex
	inflight map[string]*fetchCall
	inUse    map[string]int // sha256 → guests using it

	downloads atomic.Int64
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// NewImageCache makes a cache in dir that evicts unused images beyond
// maxBytes (0: no limit).
func NewImageCache(dir string, maxBytes int64, fetch Fetcher) (*ImageCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	// libvirt's qemu user reads base images through the overlays.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	// Leftovers of downloads cut short by a crash.
	tmps, _ := filepath.Glob(filepath.Join(dir, ".download-*"))
	for _, t := range tmps {
		os.Remove(t)
	}
	return &ImageCache{dir: dir, maxBytes: maxBytes, fetch: fetch, inflight: map[string]*fetchCall{}, inUse: map[string]int{}}, nil
}

// Downloads counts the downloads this cache has made.
func (c *ImageCache) Downloads() int64 { return c.downloads.Load() }

// Path is where an image with this checksum is kept.
func (c *ImageCache) Path(sha string) string { return filepath.Join(c.dir, sha+".img") }

// Ensure returns the path of the image, downloading it once if needed.
// Concurrent calls for one image share one download.
func (c *ImageCache) Ensure(ctx context.Context, img types.GuestImage) (string, error) {
	if !validSHA(img.SHA256) {
		return "", fmt.Errorf("image %s has no valid sha256 (%q): is it uploaded?", img.ID, img.SHA256)
	}
	p := c.Path(img.SHA256)
	for {
		if _, err := os.Stat(p); err == nil {
			now := time.Now()
			os.Chtimes(p, now, now) // recently used
			return p, nil
		}
		c.mu.Lock()
		call, ok := c.inflight[img.SHA256]
		if !ok {
			call = &fetchCall{done: make(chan struct{})}
			c.inflight[img.SHA256] = call
			c.mu.Unlock()
			call.err = c.download(ctx, img, p)
			c.mu.Lock()
			delete(c.inflight, img.SHA256)
			c.mu.Unlock()
			close(call.done)
			if call.err != nil {
				return "", call.err
			}
			c.evict(img.SHA256)
			return p, nil
		}
		c.mu.Unlock()
		select {
		case <-call.done:
			if call.err != nil {
				return "", call.err
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// download streams the image to a temporary file on a thread in the idle
// I/O class, checks it and renames it into place.
func (c *ImageCache) download(ctx context.Context, img types.GuestImage, dst string) error {
	c.downloads.Add(1)
	body, err := c.fetch(ctx, img.ID)
	if err != nil {
		return fmt.Errorf("fetch image %s: %w", img.ID, err)
	}
	defer body.Close()
	tmp, err := os.CreateTemp(c.dir, ".download-*")
	if err != nil {
		return fmt.Errorf("fetch image %s: %w", img.ID, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	type result struct {
		n   int64
		sum string
		err error
	}
	done := make(chan result, 1)
	go func() {
		// An image copy must not starve the guests' disks: this thread
		// does its I/O in the idle class (like ionice -c3), and exits
		// with the goroutine so no other work inherits the class.
		runtime.LockOSThread()
		_ = setIdleIOPriority()
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tmp, h), body)
		if err == nil {
			err = tmp.Sync()
		}
		done <- result{n, hex.EncodeToString(h.Sum(nil)), err}
	}()
	r := <-done
	if r.err != nil {
		return fmt.Errorf("fetch image %s: %w", img.ID, r.err)
	}
	if r.sum != img.SHA256 {
		return fmt.Errorf("fetch image %s: got sha256 %s, want %s: %w", img.ID, r.sum, img.SHA256, ErrChecksum)
	}
	if img.SizeBytes > 0 && r.n != img.SizeBytes {
		return fmt.Errorf("fetch image %s: got %d bytes, want %d: %w", img.ID, r.n, img.SizeBytes, ErrChecksum)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("fetch image %s: %w", img.ID, err)
	}
	ok = true
	return nil
}

// ioprio_set(2): class idle is 3, shifted by IOPRIO_CLASS_SHIFT (13);
// "who" 1 is IOPRIO_WHO_PROCESS, and id 0 the calling thread.
const (
	sysIoprioSet     = 251
	ioprioWhoProcess = 1
	ioprioIdle       = 3 << 13
)

func setIdleIOPriority() error {
	if _, _, errno := syscall.Syscall(sysIoprioSet, ioprioWhoProcess, 0, ioprioIdle); errno != 0 {
		return errno
	}
	return nil
}

// SetInUse replaces the set of images in use (after listing the guests).
func (c *ImageCache) SetInUse(shas []string) {
	m := map[string]int{}
	for _, s := range shas {
		m[s]++
	}
	c.mu.Lock()
	c.inUse = m
	c.mu.Unlock()
}

// evict removes least recently used images that no guest uses, other
// than keep (just fetched), until the cache fits maxBytes.
func (c *ImageCache) evict(keep string) {
	if c.maxBytes <= 0 {
		return
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type item struct {
		path, sha string
		size      int64
		used      time.Time
	}
	var items []item
	var total int64
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".img") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		items = append(items, item{filepath.Join(c.dir, e.Name()), strings.TrimSuffix(e.Name(), ".img"), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	sort.Slice(items, func(i, j int) bool { return items[i].used.Before(items[j].used) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		if total <= c.maxBytes {
			return
		}
		if it.sha == keep || c.inUse[it.sha] > 0 || c.inflight[it.sha] != nil {
			continue
		}
		if os.Remove(it.path) == nil {
			total -= it.size
		}
	}
}
