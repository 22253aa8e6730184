package compute

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

func image(id string, data []byte) types.GuestImage {
	sum := sha256.Sum256(data)
	return types.GuestImage{ID: id, SHA256: hex.EncodeToString(sum[:]), SizeBytes: int64(len(data))}
}

type fakeStore struct {
	data    map[string][]byte
	corrupt map[string]bool
	fetches atomic.Int64
	delay   time.Duration
}

func (f *fakeStore) fetch(_ context.Context, id string) (io.ReadCloser, error) {
	f.fetches.Add(1)
	time.Sleep(f.delay)
	d, ok := f.data[id]
	if !ok {
		return nil, errors.New("no such image")
	}
	if f.corrupt[id] {
		d = append([]byte("X"), d[1:]...)
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func TestImageCacheDownloadsOnce(t *testing.T) {
	data := bytes.Repeat([]byte("corral"), 10000)
	fs := &fakeStore{data: map[string][]byte{"img-1": data}, delay: 50 * time.Millisecond}
	c, err := NewImageCache(t.TempDir(), 0, fs.fetch)
	if err != nil {
		t.Fatal(err)
	}
	img := image("img-1", data)
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.Ensure(t.Context(), img)
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	if _, err := c.Ensure(t.Context(), img); err != nil {
		t.Fatal(err)
	}
	if n := fs.fetches.Load(); n != 1 || c.Downloads() != 1 {
		t.Errorf("fetches = %d, downloads = %d; want 1 for 9 guests of one image", n, c.Downloads())
	}
	got, _ := os.ReadFile(paths[0])
	if !bytes.Equal(got, data) {
		t.Error("cached data differs")
	}
}

func TestImageCacheRejectsCorruptDownload(t *testing.T) {
	data := bytes.Repeat([]byte("good"), 1000)
	fs := &fakeStore{data: map[string][]byte{"img-1": data}, corrupt: map[string]bool{"img-1": true}}
	dir := t.TempDir()
	c, _ := NewImageCache(dir, 0, fs.fetch)
	if _, err := c.Ensure(t.Context(), image("img-1", data)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupt download: %v, want ErrChecksum", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a rejected download left %v in the cache", entries)
	}
	// The next try (now intact) works.
	fs.corrupt = nil
	if _, err := c.Ensure(t.Context(), image("img-1", data)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ensure(t.Context(), types.GuestImage{ID: "img-2"}); err == nil {
		t.Error("an image without a checksum was accepted")
	}
}

func TestImageCacheEvictsUnusedLRU(t *testing.T) {
	a, b, d := bytes.Repeat([]byte("a"), 4000), bytes.Repeat([]byte("b"), 4000), bytes.Repeat([]byte("d"), 4000)
	fs := &fakeStore{data: map[string][]byte{"a": a, "b": b, "d": d}}
	dir := t.TempDir()
	c, _ := NewImageCache(dir, 9000, fs.fetch)
	ia, ib, id := image("a", a), image("b", b), image("d", d)
	pa, _ := c.Ensure(t.Context(), ia)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(pa, old, old)
	pb, _ := c.Ensure(t.Context(), ib)
	// a is the least recently used but a guest uses it: b goes instead.
	c.SetInUse([]string{ia.SHA256})
	pd, _ := c.Ensure(t.Context(), id)
	for p, want := range map[string]bool{pa: true, pb: false, pd: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s present = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// TestImageCacheDiskFull fills a tiny tmpfs: the download fails with the
// file system's error and the cache keeps what it had.
func TestImageCacheDiskFull(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Require(t, "CORRAL_TEST_ROOT", "root, to mount a tiny tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	small, big := bytes.Repeat([]byte("s"), 8000), bytes.Repeat([]byte("b"), 200000)
	fs := &fakeStore{data: map[string][]byte{"small": small, "big": big}}
	c, _ := NewImageCache(dir, 0, fs.fetch)
	ps, err := c.Ensure(t.Context(), image("small", small))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ensure(t.Context(), image("big", big)); err == nil {
		t.Fatal("a download larger than the disk succeeded")
	} else {
		t.Logf("disk full: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("cache holds %v after a failed download, want only the small image", entries)
	}
	if got, _ := os.ReadFile(ps); !bytes.Equal(got, small) {
		t.Error("the cached image was damaged")
	}
}
