package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/jmoiron/sqlx"
)

// TestMain removes the corrald binary the tests built (testenv.Binaries).
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// TestRefusesNewerSchema: corrald will not start on a database written by
// a newer corrald, and says what to do.
func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Config{SQLitePath: filepath.Join(dir, "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sqlx.Open("sqlite", "file:"+filepath.Join(dir, "corral.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", store.LatestVersion+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var log bytes.Buffer
	err = run(context.Background(), []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, &log)
	if !errors.Is(err, store.ErrSchemaTooNew) || !strings.Contains(err.Error(), "restore the backup") {
		t.Fatalf("run on a newer schema: %v, want ErrSchemaTooNew saying what to do", err)
	}
}

// TestFlags: placement settings reach their flags, and bad values are
// refused before anything starts.
func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"--failsafe-margin-mib", "4096", "--heartbeat-max-age", "20s", "--default-weigher", "pack"}, io.Discard)
	if err != nil || o.failsafeMarginMiB != 4096 || o.heartbeatMaxAge != 20*time.Second || o.defaultWeigher != "pack" {
		t.Errorf("parsed %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"--default-weigher", "random"}, {"--failsafe-margin-mib", "-1"}, {"--tls-cert", "c.pem"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%v) accepted", bad)
		}
	}
}

// TestHelpAndVersion: --help exits 0 as corralctl's and the agent's do,
// and the version requests print build information and exit 0 without
// starting anything; a bad flag still fails.
func TestHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     []string // each must appear
		stderrWant string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stderrWant: "-listen"},
		{name: "h", args: []string{"-h"}, code: 0, stderrWant: "-version"},
		{name: "version command", args: []string{"version"}, code: 0, stdout: []string{"corrald ", "revision: ", "go:       go1."}},
		{name: "version flag", args: []string{"--version"}, code: 0, stdout: []string{"corrald ", "go:       go1."}},
		{name: "version with other flags", args: []string{"--listen", "127.0.0.1:1", "--version"}, code: 0, stdout: []string{"corrald "}},
		{name: "bad flag", args: []string{"--no-such-flag"}, code: 1, stderrWant: "corrald: flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("corrald %v exited %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			if !strings.Contains(stderr.String(), tc.stderrWant) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderrWant)
			}
		})
	}
}
