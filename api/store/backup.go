package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// DefaultBackupsKept is how many pre-migration backups of a SQLite
// database are kept when Config.BackupsKept is 0.
const DefaultBackupsKept = 3

// backupTimeFormat is fixed-width, so names sort by time within a version.
const backupTimeFormat = "20060102T150405.000000000Z"

// tmpSuffix ends the name a backup is written under until it has been
// checked. A file with it is never a finished backup: one left over is the
// trace of an attempt that was killed, and is removed.
const tmpSuffix = ".tmp"

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// migrateHook, when set (by tests), is called at named steps of a
// migration: "backup-written" with the temporary backup file before it is
// checked, "before-lock" with "" just before a PostgreSQL migration takes
// its lock. An error it returns fails the step.
var migrateHook func(step, path string) error

func hook(step, path string) error {
	if migrateHook == nil {
		return nil
	}
	return migrateHook(step, path)
}

// backupSQLite writes a checked copy of the database at path, taken at
// schema version, next to it as path.backup-v<version>-<UTC time>, and
// keeps only the newest keep backups (keep < 0 keeps all). It returns the
// backup's path.
//
// The order matters: the copy is written under a temporary name, checked
// (it opens, passes PRAGMA integrity_check, has the source's tables and
// schema version), synced, and only then renamed to its final name, so a
// file with a final name is always a whole database; a crash at any point
// leaves at most a temporary file, which the next start removes
// (removeStaleBackups).
func (s *Store) backupSQLite(ctx context.Context, path string, version, keep int) (string, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	final := fmt.Sprintf("%s.backup-v%d-%s", path, version, time.Now().UTC().Format(backupTimeFormat))
	tmp := final + tmpSuffix
	// VACUUM INTO accepts an empty file: create it first so that the copy
	// is 0600 whatever the umask, like the database it copies.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	f.Close()
	done := false
	defer func() {
		if !done {
			removeWithSidecars(tmp)
		}
	}()
	if err := hook("backup-create", tmp); err != nil {
		return "", err
	}
	if _, err := s.w.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return "", fmt.Errorf("vacuum into %s: %w", tmp, err)
	}
	if err := hook("backup-written", tmp); err != nil {
		return "", err
	}
	var tables int
	if err := s.w.GetContext(ctx, &tables, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"); err != nil {
		return "", fmt.Errorf("count tables: %w", err)
	}
	if err := checkBackup(ctx, tmp, tables, version); err != nil {
		return "", fmt.Errorf("check %s: %w", tmp, err)
	}
	if err := syncFile(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	done = true
	if err := syncFile(dir); err != nil {
		return "", fmt.Errorf("sync %s: %w", dir, err)
	}
	if keep >= 0 {
		s.pruneBackups(dir, base, max(keep, 1))
	}
	return final, nil
}

// checkBackup opens the backup read-only and checks that it is a whole
// database of the source's tables at the source's schema version.
func checkBackup(ctx context.Context, path string, tables, version int) error {
	// immutable: read without locks, -wal or -shm files beside it.
	db, err := sqlx.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return err
	}
	defer db.Close()
	var res []string
	if err := db.SelectContext(ctx, &res, "PRAGMA integrity_check"); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(res) != 1 || res[0] != "ok" {
		return fmt.Errorf("integrity check: %s", strings.Join(res, "; "))
	}
	var n, v int
	if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"); err != nil {
		return fmt.Errorf("count tables: %w", err)
	}
	if n != tables {
		return fmt.Errorf("%d tables, the database has %d", n, tables)
	}
	if err := db.GetContext(ctx, &v, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v != version {
		return fmt.Errorf("schema version %d, the database is at %d", v, version)
	}
	return nil
}

// backupFile is a backup of base found in its directory.
type backupFile struct {
	path string
	time string // the UTC time in its name, in backupTimeFormat
}

// listBackups returns the backups of base in dir with their final names,
// oldest first, and the temporary files of earlier attempts.
func listBackups(dir, base string) (backups []backupFile, tmps []string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	prefix := base + ".backup-v"
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) {
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			tmps = append(tmps, filepath.Join(dir, name))
			continue
		}
		// <base>.backup-v<N>-<time>: the time follows the last '-'.
		ts := name[strings.LastIndexByte(name, '-')+1:]
		if _, err := time.Parse(backupTimeFormat, ts); err != nil {
			continue // not a name this store writes: not ours to judge
		}
		backups = append(backups, backupFile{path: filepath.Join(dir, name), time: ts})
	}
	sort.Slice(backups, func(i, j int) bool { return backups[i].time < backups[j].time })
	return backups, tmps
}

// removeStaleBackups removes what killed backup attempts left: temporary
// files, and files with a backup's name that are empty or not SQLite
// databases at all (earlier corrald versions wrote VACUUM INTO straight to
// the final name). A file that is a SQLite database is left alone even if
// it is damaged: it may be the only copy of something.
func (s *Store) removeStaleBackups(dir, base string) {
	backups, tmps := listBackups(dir, base)
	for _, p := range tmps {
		s.log.Warn("removing the temporary file of an interrupted backup", "file", p)
		removeWithSidecars(p)
	}
	for _, b := range backups {
		if ok, err := hasSQLiteHeader(b.path); err == nil && !ok {
			s.log.Warn("removing a backup that is not a database (interrupted while it was written)", "file", b.path)
			os.Remove(b.path)
		}
	}
}

// pruneBackups keeps the newest keep backups of base that are databases
// and removes the older ones.
func (s *Store) pruneBackups(dir, base string, keep int) {
	backups, _ := listBackups(dir, base)
	var good []backupFile
	for _, b := range backups {
		if ok, err := hasSQLiteHeader(b.path); err == nil && ok {
			good = append(good, b)
		}
	}
	for len(good) > keep {
		s.log.Info("removing an old pre-migration backup", "file", good[0].path, "kept", keep)
		if err := os.Remove(good[0].path); err != nil {
			s.log.Warn("remove old backup", "file", good[0].path, "err", err)
		}
		good = good[1:]
	}
}

func hasSQLiteHeader(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return bytes.Equal(b, sqliteHeader), nil
}

// removeWithSidecars removes a database file and the journal files SQLite
// may have made beside it.
func removeWithSidecars(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// syncFile flushes a file or directory to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
