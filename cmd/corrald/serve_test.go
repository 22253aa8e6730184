package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
)

// TestCheckPlainHTTP: plain HTTP only on loopback, unless TLS or
// --insecure-http.
func TestCheckPlainHTTP(t *testing.T) {
	for _, tt := range []struct {
		addr          string
		tls, insecure bool
		ok            bool
	}{
		{addr: "127.0.0.1:8440", ok: true},
		{addr: "127.0.0.2:0", ok: true},
		{addr: "[::1]:8440", ok: true},
		{addr: "localhost:8440", ok: true},
		{addr: "0.0.0.0:8440"},
		{addr: ":8440"},
		{addr: "[::]:8440"},
		{addr: "10.1.2.3:8440"},
		{addr: "0.0.0.0:8440", tls: true, ok: true},
		{addr: "10.1.2.3:8440", insecure: true, ok: true},
		{addr: "no-port"},
	} {
		err := checkPlainHTTP(tt.addr, tt.tls, tt.insecure)
		if (err == nil) != tt.ok {
			t.Errorf("checkPlainHTTP(%q, tls=%v, insecure=%v) = %v, want ok=%v", tt.addr, tt.tls, tt.insecure, err, tt.ok)
		}
	}
}

// TestRefusesPlainHTTPOffLoopback: corrald stops before it opens anything.
func TestRefusesPlainHTTPOffLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	err := run(context.Background(), []string{"--data-dir", dir, "--listen", "0.0.0.0:0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--insecure-http") || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("run on 0.0.0.0 without TLS = %v, want a refusal naming --tls-cert and --insecure-http", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused start made its data directory: %v", err)
	}
}

// TestServeFlags: the serving limits reach their flags, and nonsense is
// refused.
func TestServeFlags(t *testing.T) {
	o, err := parseFlags([]string{"--read-header-timeout", "3s", "--read-timeout", "4s", "--write-timeout", "5s",
		"--idle-timeout", "6s", "--max-connections", "7", "--rate-limit-token", "8", "--rate-limit-token-burst", "9",
		"--rate-limit-agent", "0", "--rate-limit-source", "1.5", "--insecure-http"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := o.serve.server(nil, nil)
	if srv.ReadHeaderTimeout != 3*time.Second || srv.ReadTimeout != 4*time.Second || srv.WriteTimeout != 5*time.Second ||
		srv.IdleTimeout != 6*time.Second || o.serve.maxConns != 7 || !o.insecureHTTP {
		t.Errorf("parsed %+v, server %+v", o.serve, srv)
	}
	rl := o.serve.rateLimits()
	if rl.Token.PerSecond != 8 || rl.Token.Burst != 9 || rl.Agent.PerSecond != 0 || rl.Source.PerSecond != 1.5 || rl.Source.Burst != 50 {
		t.Errorf("rate limits %+v", rl)
	}
	d, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := d.serve.server(nil, nil); s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 ||
		d.serve.maxConns == 0 || d.serve.tokenRate == 0 || d.serve.agentRate == 0 || d.serve.sourceRate == 0 {
		t.Errorf("defaults leave something unbounded: %+v", d.serve)
	}
	for _, bad := range [][]string{{"--read-timeout", "0s"}, {"--idle-timeout", "-1s"}, {"--max-connections", "-1"},
		{"--rate-limit-token", "-1"}, {"--rate-limit-agent-burst", "0"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%v) accepted", bad)
		}
	}
}

// TestBMCKeyFile: a new BMC key is made only on a first start at the
// default path, or on request; a wrong path is an error.
func TestBMCKeyFile(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	data := t.TempDir()
	st, err := store.Open(ctx, store.Config{SQLitePath: filepath.Join(data, "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	outside := filepath.Join(t.TempDir(), "keys", "bmc.key")

	// A wrong --bmc-key-file: an error that says what to do, and no file.
	if _, err := loadBMCKey(ctx, &bmOptions{keyFile: outside}, st, data, log); err == nil || !strings.Contains(err.Error(), "--bmc-key-generate") {
		t.Fatalf("missing --bmc-key-file = %v, want an error naming --bmc-key-generate", err)
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Fatalf("a key was made at the wrong path: %v", err)
	}
	// --bmc-key-generate makes it, outside the data directory, mode 0600;
	// a second start reads the same key.
	k1, err := loadBMCKey(ctx, &bmOptions{keyFile: outside, keyGenerate: true}, st, data, log)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key: %v, %v", fi, err)
	}
	sealed, _ := k1.Seal("pw")
	k2, err := loadBMCKey(ctx, &bmOptions{keyFile: outside, keyGenerate: true}, st, data, log)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := k2.Open(sealed); err != nil || p != "pw" {
		t.Fatalf("--bmc-key-generate replaced the existing key: %q %v", p, err)
	}

	// The default path on a first start (no nodes): made.
	if _, err := loadBMCKey(ctx, &bmOptions{}, st, data, log); err != nil {
		t.Fatalf("first start: %v", err)
	}
	def := filepath.Join(data, "bmc.key")
	if _, err := os.Stat(def); err != nil {
		t.Fatalf("first start made no default key: %v", err)
	}
	// Once nodes are enrolled, a lost default key is an error, not a new key.
	os.Remove(def)
	r, _ := st.CreateRegion(ctx, types.RegionCreate{Name: "dc1"})
	z, _ := st.CreateZone(ctx, r.ID, types.ZoneCreate{Name: "rack1"})
	if _, err := st.CreateNode(ctx, store.NodeEnrolment{Name: "bm1", RegionID: r.ID, ZoneID: z.ID, BMCPassword: sealed,
		MACs: []string{"52:54:00:00:00:01"}, Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := loadBMCKey(ctx, &bmOptions{}, st, data, log); err == nil || !strings.Contains(err.Error(), "nodes are enrolled") {
		t.Fatalf("lost default key with nodes enrolled = %v, want a refusal", err)
	}
	if _, err := os.Stat(def); !os.IsNotExist(err) {
		t.Fatalf("a new default key was made although nodes are enrolled: %v", err)
	}
}

// TestFileModes: the real corrald makes its database (and WAL, shared
// memory, pre-migration backup), tokens and keys readable by its user only,
// and makes a database copied in with a looser mode private; it refuses to
// start on a --bmc-key-file that does not exist.
func TestFileModes(t *testing.T) {
	bin := filepath.Join(testenv.Binaries(t, "."), "corrald")
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile("../../api/store/testdata/corral-v1.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "corral.db"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(data, "corral.db"), 0o644) // whatever the test's umask
	key := filepath.Join(t.TempDir(), "secrets", "bmc.key")
	args := []string{"--data-dir", data, "--bmc-key-file", key}

	// A --bmc-key-file that does not exist: corrald exits, and makes none.
	logPath := filepath.Join(t.TempDir(), "refused.log")
	p := testenv.Start(t, logPath, bin, append([]string{"--listen", testenv.FreeAddr(t)}, args...)...)
	select {
	case <-p.Exited:
	case <-time.After(60 * time.Second):
		t.Fatal("corrald with a missing --bmc-key-file did not exit")
	}
	out, _ := os.ReadFile(logPath)
	if p.Err == nil || !strings.Contains(string(out), "--bmc-key-generate") {
		t.Fatalf("corrald with a missing --bmc-key-file: %v\n%s", p.Err, out)
	}
	if _, err := os.Stat(key); !os.IsNotExist(err) {
		t.Fatalf("a key was made at the missing path: %v", err)
	}

	addr := testenv.FreeAddr(t)
	p = testenv.Start(t, filepath.Join(t.TempDir(), "corrald.log"), bin,
		append([]string{"--listen", addr, "--bmc-key-generate"}, args...)...)
	if err := testenv.WaitReady("http://"+addr, p.Exited, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(data, "corral.db*"))
	var backups, wal int
	for _, f := range files {
		backups += strings.Count(f, ".backup-")
		if strings.HasSuffix(f, "-wal") || strings.HasSuffix(f, "-shm") {
			wal++
		}
	}
	if backups == 0 || wal == 0 {
		t.Fatalf("want a database, its WAL files and a pre-migration backup, have %v", files)
	}
	check := func(path string) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			return
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group and others", path, fi.Mode().Perm())
		}
	}
	filepath.Walk(data, func(path string, _ os.FileInfo, err error) error {
		if err == nil && path != data { // the test made the directory itself, 0755
			check(path)
		}
		return nil
	})
	check(key)
}

// TestServesTLS: with --tls-cert and --tls-key the real corrald answers
// HTTPS (through its connection cap and timeouts), and plain HTTP gets no
// API answer.
func TestServesTLS(t *testing.T) {
	bin := filepath.Join(testenv.Binaries(t, "."), "corrald")
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	addr := testenv.FreeAddr(t)
	p := testenv.Start(t, filepath.Join(dir, "corrald.log"), bin, "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--tls-cert", cert, "--tls-key", key, "--max-connections", "16")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := hc.Get("https://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		select {
		case <-p.Exited:
			t.Fatal("corrald with TLS exited")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTPS answer from corrald within 60 s: %v", err)
		}
	}
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/readyz"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}
}

// selfSigned makes a certificate and key for 127.0.0.1, PEM-encoded.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corrald-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
