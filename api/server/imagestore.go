package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
)

// imageStore keeps image data as one file per image ID in a directory.
// Uploads stream to a temporary file while hashing, are synced, and then
// renamed into place, so a reader never sees a partial image.
type imageStore struct {
	dir string
}

var imageIDRE = regexp.MustCompile(`^img-[0-9a-f]{24}$`)

func newImageStore(dir string) (*imageStore, error) {
	if dir == "" {
		return nil, errors.New("image store: no directory")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return &imageStore{dir: dir}, nil
}

func (s *imageStore) path(id string) (string, error) {
	if !imageIDRE.MatchString(id) {
		return "", fmt.Errorf("image store: bad image ID %q", id)
	}
	return filepath.Join(s.dir, id), nil
}

// errTooLarge means an upload went over its limit.
var errTooLarge = errors.New("image over the size limit")

// put streams r into the image's file, never holding it in memory, and
// returns its size and SHA-256. check, when set, inspects the complete
// temporary file before it is renamed into place, and its error refuses
// the data. On any error nothing is left behind.
func (s *imageStore) put(id string, r io.Reader, limit int64, check func(path string, size int64) error) (int64, string, error) {
	dst, err := s.path(id)
	if err != nil {
		return 0, "", err
	}
	tmp, err := os.CreateTemp(s.dir, id+".upload-*")
	if err != nil {
		return 0, "", fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), http.MaxBytesReader(nil, io.NopCloser(r), limit))
	if err != nil {
		tmp.Close()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, "", errTooLarge
		}
		return 0, "", fmt.Errorf("image store: write %s: %w", id, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, "", fmt.Errorf("image store: sync %s: %w", id, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, "", fmt.Errorf("image store: close %s: %w", id, err)
	}
	if check != nil {
		if err := check(tmp.Name(), n); err != nil {
			return 0, "", err
		}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return 0, "", fmt.Errorf("image store: %w", err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// remove deletes an image's data; a missing file is not an error.
func (s *imageStore) remove(id string) error {
	p, err := s.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image store: %w", err)
	}
	return nil
}
