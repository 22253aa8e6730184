package store_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/store/storetest"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

var update = flag.Bool("update", false, "rewrite testdata/corral-v1.db")

func openSQLite(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Config{SQLitePath: filepath.Join(t.TempDir(), "corral.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres opens a store on a fresh database of the server named by
// CORRAL_TEST_PG_DSN.
func openPostgres(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Config{PostgresDSN: testenv.PostgresDatabase(t, "corral_store")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLite(t *testing.T)   { storetest.Run(t, openSQLite) }
func TestPostgres(t *testing.T) { storetest.Run(t, openPostgres) }

// TestMigrateOldDatabase opens a database written at schema version 1 (kept
// in testdata) with data in it: the store must back it up, migrate it, and
// keep every row (an operator lost every VM created before an upgrade).
func TestMigrateOldDatabase(t *testing.T) {
	const fixture = "testdata/corral-v1.db"
	if *update {
		writeV1Fixture(t, fixture)
	}
	old, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "corral.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(context.Background()); v != store.LatestVersion {
		t.Errorf("schema version after migration = %d, want %d", v, store.LatestVersion)
	}
	if s.BackupPath == "" || !strings.Contains(s.BackupPath, ".backup-v1-") {
		t.Fatalf("backup path = %q, want a v1 backup", s.BackupPath)
	}
	// The backup is a usable copy of the old database.
	bk, err := sqlx.Open("sqlite", "file:"+s.BackupPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	var v, n int
	if err := bk.Get(&v, "SELECT MAX(version) FROM schema_migrations"); err != nil || v != 1 {
		t.Errorf("backup schema version = %d, %v; want 1", v, err)
	}
	if err := bk.Get(&n, "SELECT COUNT(*) FROM servers"); err != nil || n != 1 {
		t.Errorf("servers in backup = %d, %v; want 1", n, err)
	}
	// The data survived, and the new columns work.
	list, err := s.ListServers(context.Background(), store.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "survivor" {
		t.Fatalf("servers after migration = %+v, %v", list.Items, err)
	}
	srv, err := s.SetServerState(context.Background(), list.Items[0].ID, types.ServerError, "disk full")
	if err != nil || srv.Fault != "disk full" {
		t.Errorf("set fault on migrated server = %+v, %v", srv, err)
	}
	// A second open finds nothing to do and takes no backup.
	s.Close()
	s2, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.BackupPath != "" {
		t.Errorf("backup taken with nothing to migrate: %s", s2.BackupPath)
	}
}

// writeV1Fixture builds testdata/corral-v1.db with the v1 schema and one of
// everything a server needs.
func writeV1Fixture(t *testing.T, path string) {
	os.Remove(path)
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{SQLitePath: path, MigrateTo: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, _ := s.CreateRegion(ctx, types.RegionCreate{Name: "dc1"})
	z, _ := s.CreateZone(ctx, r.ID, types.ZoneCreate{Name: "rack1"})
	f, _ := s.CreateFlavor(ctx, types.FlavorCreate{Name: "m1", Kind: "vm", VCPUs: 1, RAMMiB: 256, DiskGiB: 1})
	i, _ := s.CreateImage(ctx, types.ImageCreate{Name: "tiny", DiskFormat: "qcow2"})
	p, _ := s.CreateProject(ctx, types.ProjectCreate{Name: "p"})
	// The v1 servers table has no fault or launched_at column, so the row
	// is written by hand.
	db, err := sqlx.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO servers (id, revision, created_at, updated_at, name, kind, project_id, flavor_id,
		image_id, region_id, zone_id, aggregate_id, desired_state, state, host_id, node_id, addresses)
		VALUES ('srv-000000000001aaaaaaaaaaaa', 1, 1, 1, 'survivor', 'vm', ?, ?, ?, ?, ?, '', 'active', 'pending', '', '', '[]')`,
		p.ID, f.ID, i.ID, r.ID, z.ID); err != nil {
		t.Fatal(err)
	}
	db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
}

// TestRefuseNewerSchema: a database written by a newer corrald is refused
// with ErrSchemaTooNew and a message that says what to do.
func TestRefuseNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.db")
	mustOpen(t, path).Close()
	db, err := sqlx.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", store.LatestVersion+5); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = store.Open(context.Background(), store.Config{SQLitePath: path})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("open newer schema: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", store.LatestVersion+5)) || !strings.Contains(err.Error(), "restore the backup") {
		t.Errorf("error does not say what to do: %v", err)
	}
}

func mustOpen(t *testing.T, path string) *store.Store {
	s, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
