package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/jmoiron/sqlx"
)

// PostgresDatabase creates an empty database, named with prefix and a
// random suffix, on the server CORRAL_TEST_PG_DSN names, and returns its
// DSN; the database is dropped when the test ends. Without the variable the
// test is skipped, or failed under CI=true (see Require).
func PostgresDatabase(t testing.TB, prefix string) string {
	t.Helper()
	dsn := Require(t, "CORRAL_TEST_PG_DSN", "a PostgreSQL server")
	admin, err := sqlx.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	var hugePages string
	if err := admin.Get(&hugePages, "SHOW huge_pages"); err == nil && hugePages != "off" {
		// Its shared memory may sit in the 2 MiB pages reserved for
		// guests, and make the hugepage tests count pages it touches.
		t.Logf("the PostgreSQL server for tests runs with huge_pages=%s; .ci/postgres restarts it with off", hugePages)
	}
	var b [6]byte
	rand.Read(b[:])
	name := prefix + "_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE " + name + " WITH (FORCE)")
		admin.Close()
	})
	base, query, _ := strings.Cut(dsn, "?")
	out := base[:strings.LastIndex(base, "/")+1] + name
	if query != "" {
		out += "?" + query
	}
	return out
}
