package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/jmoiron/sqlx"
)

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
