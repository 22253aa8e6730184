package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

func init() {
	// sqlx does not know modernc's driver name; it takes ? placeholders.
	sqlx.BindDriver("sqlite", sqlx.QUESTION)
}

// Config says which database to open.
type Config struct {
	// PostgresDSN selects PostgreSQL when set (a pgx connection string).
	PostgresDSN string
	// SQLitePath is the database file used when PostgresDSN is empty.
	SQLitePath string
	// Logger receives migration and backup messages; nil discards them.
	Logger *slog.Logger
	// MigrateTo stops migrating at this version; 0 means the latest. Tests
	// use it to build databases of an older schema.
	MigrateTo int
	// BackupsKept is how many pre-migration backups of a SQLite database
	// to keep, the new one included; older ones are removed once a new one
	// is written. 0 means DefaultBackupsKept; a negative value keeps all.
	BackupsKept int
}

// Store is Corral's state. It is safe for concurrent use.
type Store struct {
	dialect string
	// w takes writes. On SQLite it holds a single connection, so writers
	// queue in Go instead of failing with SQLITE_BUSY; on PostgreSQL w and r
	// are the same pool.
	w *sqlx.DB
	// r takes reads; on SQLite several connections read the WAL at once.
	r   *sqlx.DB
	log *slog.Logger

	// BackupPath is the copy written before migrating, or "" if none was.
	BackupPath string

	rebound sync.Map // query with ? -> query in the dialect's bind style
}

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() []migration {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, e := range entries {
		n, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			panic("migration without a version number: " + e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: n, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			panic(fmt.Sprintf("migrations must be numbered 1..n without gaps, found %s", m.name))
		}
	}
	return ms
}

var migrations = loadMigrations()

// LatestVersion is the schema version this binary writes.
var LatestVersion = len(migrations)

// Open connects to the database, backs it up if it needs migrating (SQLite),
// and migrates it. It fails with ErrSchemaTooNew if the database is newer.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s := &Store{log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.PostgresDSN != "" {
		s.dialect = Postgres
		s.w, err = sqlx.Open("pgx", cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		s.w.SetMaxOpenConns(32)
		s.w.SetMaxIdleConns(32)
		s.w.SetConnMaxIdleTime(5 * time.Minute)
		s.r = s.w
	} else {
		if cfg.SQLitePath == "" {
			return nil, errors.New("open sqlite: no database path")
		}
		s.dialect = SQLite
		if err := os.MkdirAll(filepath.Dir(cfg.SQLitePath), 0o700); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		dsn := "file:" + cfg.SQLitePath + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
			"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
		s.w, err = sqlx.Open("sqlite", dsn+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", cfg.SQLitePath, err)
		}
		s.w.SetMaxOpenConns(1)
		s.w.SetConnMaxIdleTime(0)
		s.r, err = sqlx.Open("sqlite", dsn+"&_pragma=query_only(1)")
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", cfg.SQLitePath, err)
		}
		s.r.SetMaxOpenConns(8)
		s.r.SetMaxIdleConns(8)
		s.r.SetConnMaxIdleTime(0)
	}
	if err := s.w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect to %s: %w", s.dialect, err)
	}
	if err := s.migrate(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the database connections.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// Dialect returns SQLite or Postgres.
func (s *Store) Dialect() string { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// SchemaVersion returns the version of the schema in the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.GetContext(ctx, &v, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
	return v, err
}

// rb rewrites a query written with ? placeholders for the dialect.
func (s *Store) rb(q string) string {
	if s.dialect == SQLite {
		return q
	}
	if v, ok := s.rebound.Load(q); ok {
		return v.(string)
	}
	out := s.w.Rebind(q)
	s.rebound.Store(q, out)
	return out
}

func (s *Store) migrate(ctx context.Context, cfg Config) error {
	target := LatestVersion
	if cfg.MigrateTo > 0 && cfg.MigrateTo < target {
		target = cfg.MigrateTo
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	current, err := s.currentVersion(ctx, s.w)
	if err != nil {
		return err
	}
	if s.dialect == SQLite {
		s.removeStaleBackups(filepath.Dir(cfg.SQLitePath), filepath.Base(cfg.SQLitePath))
	}
	if done, err := checkVersion(current, target); done || err != nil {
		return err
	}
	// Back up before touching a database that already holds data. VACUUM
	// INTO cannot run inside a transaction, so it comes first; SQLite has
	// one corrald, so nothing writes between the copy and the migration.
	// Without a good backup there is no migration.
	if s.dialect == SQLite && current > 0 {
		keep := cfg.BackupsKept
		if keep == 0 {
			keep = DefaultBackupsKept
		}
		backup, err := s.backupSQLite(ctx, cfg.SQLitePath, current, keep)
		if err != nil {
			return fmt.Errorf("refusing to migrate %s from schema version %d to %d without a good backup: %w",
				cfg.SQLitePath, current, target, err)
		}
		s.BackupPath = backup
		s.log.Info("backed up database before migrating", "backup", backup, "from_version", current, "to_version", target)
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	if s.dialect == Postgres {
		// Replicas starting together: one migrates, the others wait here
		// and then find nothing left to do. What they read before the lock
		// may be out of date by now (another replica may even have
		// migrated past this binary), so decide again.
		if err := hook("before-lock", ""); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7366257)"); err != nil {
			return fmt.Errorf("lock for migration: %w", err)
		}
		if current, err = s.currentVersion(ctx, tx); err != nil {
			return err
		}
		if done, err := checkVersion(current, target); done || err != nil {
			return err
		}
	}
	for _, m := range migrations[current:target] {
		for _, stmt := range splitStatements(m.sql) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.rb("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
			m.version, micros(time.Now())); err != nil {
			return fmt.Errorf("record migration %s: %w", m.name, err)
		}
		s.log.Info("applied migration", "migration", m.name)
	}
	return tx.Commit()
}

// checkVersion decides what a database at schema version current needs to
// reach target: done when nothing, ErrSchemaTooNew when it is newer than
// this binary.
func checkVersion(current, target int) (done bool, err error) {
	if current > LatestVersion {
		return true, fmt.Errorf("%w: the database is at schema version %d, this binary knows up to %d; "+
			"run a corrald at least as new as the one that wrote it, or restore the backup taken before that upgrade",
			ErrSchemaTooNew, current, LatestVersion)
	}
	return current >= target, nil
}

func (s *Store) currentVersion(ctx context.Context, q sqlx.QueryerContext) (int, error) {
	var v int
	if err := sqlx.GetContext(ctx, q, &v, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// splitStatements splits a migration into statements at semicolons that end
// a line, dropping comment lines. Migrations keep semicolons out of strings.
func splitStatements(sql string) []string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	var out []string
	for _, stmt := range strings.Split(b.String(), ";\n") {
		if t := strings.TrimSpace(stmt); t != "" {
			out = append(out, strings.TrimSuffix(t, ";"))
		}
	}
	return out
}
