package baremetal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a BMC key: AES-256.
const KeySize = 32

// sealPrefix marks the format of a sealed value, so that the format can
// change without ambiguity.
const sealPrefix = "v1:"

// Keyring seals secrets at rest (BMC passwords, deploy tokens) with
// AES-256-GCM and a random nonce per value. It is safe for concurrent use.
type Keyring struct{ aead cipher.AEAD }

// NewKeyring returns a keyring for a 32-byte key.
func NewKeyring(key []byte) (*Keyring, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("bmc key: %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keyring{aead: aead}, nil
}

// ParseKey reads a key written as 64 hex digits or as base64 of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	return nil, errors.New("bmc key: want 64 hex digits or the base64 of 32 bytes")
}

// LoadKeyFile reads a key file. With create, a missing file is made with
// a new random key (mode 0600), and the boolean says so; an existing file
// is never replaced, even by a concurrent creator. Replicas must share the
// same key. Without create a missing file is an error wrapping
// os.ErrNotExist.
func LoadKeyFile(path string, create bool) (*Keyring, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		k, made, cerr := createKeyFile(path)
		if cerr == nil || !errors.Is(cerr, os.ErrExist) {
			return k, made, cerr
		}
		b, err = os.ReadFile(path) // another process made it first: use theirs
	}
	if err != nil {
		return nil, false, fmt.Errorf("read bmc key: %w", err)
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	k, err := NewKeyring(key)
	return k, false, err
}

// createKeyFile writes a new random key to path, which must not exist.
func createKeyFile(path string) (*Keyring, bool, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("create bmc key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("write bmc key: %w", err)
	}
	k, err := NewKeyring(key)
	return k, true, err
}

// Seal encrypts plain.
func (k *Keyring) Seal(plain string) (string, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := k.aead.Seal(nonce, nonce, []byte(plain), nil)
	return sealPrefix + base64.RawStdEncoding.EncodeToString(ct), nil
}

// ErrBadSeal means a sealed value was not made with this key.
var ErrBadSeal = errors.New("sealed value does not open with this bmc key")

// Open decrypts a value made by Seal.
func (k *Keyring) Open(sealed string) (string, error) {
	b64, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return "", ErrBadSeal
	}
	ct, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(ct) < k.aead.NonceSize() {
		return "", ErrBadSeal
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, ct[:n], ct[n:], nil)
	if err != nil {
		return "", ErrBadSeal
	}
	return string(plain), nil
}
