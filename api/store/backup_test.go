package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/google/go-cmp/cmp"
	"github.com/jmoiron/sqlx"
)

// v1Database copies the schema version 1 fixture into a new directory and
// returns its path.
func v1Database(t *testing.T) string {
	t.Helper()
	old, err := os.ReadFile("testdata/corral-v1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "corral.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// backupNames lists the names in dir that start like a backup of
// corral.db, sorted.
func backupNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "corral.db.backup") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// checkGoodBackup opens a backup read-only and checks that it is the v1
// fixture: intact, at version 1, with its server, and private to its owner.
func checkGoodBackup(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup %s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	db, err := sqlx.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	var v, n int
	if err := db.Get(&ok, "PRAGMA integrity_check"); err != nil || ok != "ok" {
		t.Errorf("integrity of %s: %q, %v", path, ok, err)
	}
	if err := db.Get(&v, "SELECT MAX(version) FROM schema_migrations"); err != nil || v != 1 {
		t.Errorf("backup schema version = %d, %v; want 1", v, err)
	}
	if err := db.Get(&n, "SELECT COUNT(*) FROM servers"); err != nil || n != 1 {
		t.Errorf("servers in backup = %d, %v; want 1", n, err)
	}
}

// rawVersion reads a SQLite database's schema version without the store.
func rawVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sqlx.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.Get(&v, "SELECT MAX(version) FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMigrateCleansCrashedBackups: what killed backups left (temporary
// files, empty or garbage files with a backup's name) is removed at the
// next start, which writes one good backup; a file that is not ours is
// left alone; a start with nothing to migrate adds nothing and still
// removes leftovers.
func TestMigrateCleansCrashedBackups(t *testing.T) {
	path := v1Database(t)
	dir := filepath.Dir(path)
	leftovers := map[string]string{
		"corral.db.backup-v1-20240101T000000.000000000Z.tmp": "",
		"corral.db.backup-v1-20240101T000001.000000000Z.tmp": "SQLite format 3\x00 and then the kill",
		"corral.db.backup-v1-20240101T000002.000000000Z":     "",
		"corral.db.backup-v1-20240101T000003.000000000Z":     "not a database at all",
		"corral.db.backup-notes.txt":                         "the operator's own file",
	}
	for name, content := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.SchemaVersion(context.Background()); v != store.LatestVersion {
		t.Errorf("schema version after migration = %d, want %d", v, store.LatestVersion)
	}
	want := []string{"corral.db.backup-notes.txt", filepath.Base(s.BackupPath)}
	sort.Strings(want)
	if diff := cmp.Diff(want, backupNames(t, dir)); diff != "" {
		t.Errorf("files after start (-want +got):\n%s", diff)
	}
	checkGoodBackup(t, s.BackupPath)
	s.Close()

	for _, name := range []string{"corral.db.backup-v7-20240101T000000.000000000Z.tmp", "corral.db.backup-v7-20240101T000001.000000000Z"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := store.Open(context.Background(), store.Config{SQLitePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.BackupPath != "" {
		t.Errorf("a start with nothing to migrate took a backup: %s", s2.BackupPath)
	}
	if diff := cmp.Diff(want, backupNames(t, dir)); diff != "" {
		t.Errorf("files after a second start (-want +got):\n%s", diff)
	}
}

// TestMigrateRefusesWithoutGoodBackup: when the backup cannot be written,
// or what was written is not a whole copy, the database is not migrated,
// the error says why, and no file that looks like a backup is left.
func TestMigrateRefusesWithoutGoodBackup(t *testing.T) {
	errDiskFull := errors.New("no space left on device (injected)")
	for _, tc := range []struct {
		name  string
		fault func(step, path string) error
		want  string
	}{
		{"cannot write", func(step, _ string) error {
			if step == "backup-create" {
				return errDiskFull
			}
			return nil
		}, "no space left"},
		{"torn copy", func(step, path string) error {
			if step == "backup-written" {
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				return os.WriteFile(path, b[:len(b)/3], 0o600)
			}
			return nil
		}, "check"},
		{"garbage copy", func(step, path string) error {
			if step == "backup-written" {
				return os.WriteFile(path, []byte("SQLite format 3\x00garbage garbage garbage"), 0o600)
			}
			return nil
		}, "check"},
		{"copy of another database", func(step, path string) error {
			if step != "backup-written" {
				return nil
			}
			// A whole database, but with no tables.
			if err := os.Remove(path); err != nil {
				return err
			}
			db, err := sqlx.Open("sqlite", "file:"+path)
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.Exec("CREATE TABLE x (a INTEGER)")
			return err
		}, "tables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := v1Database(t)
			defer store.SetMigrateHook(tc.fault)()
			s, err := store.Open(context.Background(), store.Config{SQLitePath: path})
			if err == nil {
				s.Close()
				t.Fatal("migrated without a good backup")
			}
			if !strings.Contains(err.Error(), "refusing to migrate") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want it to refuse and say %q", err, tc.want)
			}
			if v := rawVersion(t, path); v != 1 {
				t.Errorf("schema version after a refused migration = %d, want 1", v)
			}
			if names := backupNames(t, filepath.Dir(path)); len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}
		})
	}
}

// TestBackupRetention: after a new backup, only the newest N are kept.
func TestBackupRetention(t *testing.T) {
	old := []string{
		"corral.db.backup-v1-20200101T000000.000000000Z",
		"corral.db.backup-v1-20200102T000000.000000000Z",
		"corral.db.backup-v1-20200103T000000.000000000Z",
		"corral.db.backup-v1-20200104T000000.000000000Z",
	}
	for _, tc := range []struct {
		name string
		keep int
		want []string // besides the new backup
	}{
		{"default", 0, old[2:]},
		{"one", 1, nil},
		{"five", 5, old},
		{"all", -1, old},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := v1Database(t)
			fixture, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range old {
				if err := os.WriteFile(filepath.Join(filepath.Dir(path), name), fixture, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := store.Open(context.Background(), store.Config{SQLitePath: path, BackupsKept: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want := append(append([]string(nil), tc.want...), filepath.Base(s.BackupPath))
			if diff := cmp.Diff(want, backupNames(t, filepath.Dir(path))); diff != "" {
				t.Errorf("backups kept with BackupsKept=%d (-want +got):\n%s", tc.keep, diff)
			}
			checkGoodBackup(t, s.BackupPath)
		})
	}
}

// TestPostgresDecidesAfterLock: a replica decides what to migrate again
// once it holds the migration lock, because another replica may have
// migrated meanwhile (here: while this one was about to take the lock).
func TestPostgresDecidesAfterLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		// meanwhile is what the other replica does.
		meanwhile func(t *testing.T, dsn string)
		wantErr   error
	}{
		{"migrated past this one's target", func(t *testing.T, dsn string) {
			s, err := store.Open(context.Background(), store.Config{PostgresDSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}, nil},
		{"migrated past this binary", func(t *testing.T, dsn string) {
			db, err := sqlx.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)", store.LatestVersion+5); err != nil {
				t.Fatal(err)
			}
		}, store.ErrSchemaTooNew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := testenv.PostgresDatabase(t, "corral_lock")
			s, err := store.Open(context.Background(), store.Config{PostgresDSN: dsn, MigrateTo: 1})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			fired := false
			defer store.SetMigrateHook(func(step, _ string) error {
				if step == "before-lock" && !fired {
					fired = true // the other replica's own migration passes here too
					tc.meanwhile(t, dsn)
				}
				return nil
			})()
			s, err = store.Open(context.Background(), store.Config{PostgresDSN: dsn, MigrateTo: 2})
			if !fired {
				t.Fatal("the hook before the lock did not run")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("open: %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				defer s.Close()
				if v, _ := s.SchemaVersion(context.Background()); v != store.LatestVersion {
					t.Errorf("schema version %d, want %d (left as the other replica made it)", v, store.LatestVersion)
				}
			}
		})
	}
}
