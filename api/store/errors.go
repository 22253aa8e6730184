package store

import (
	"errors"
	"fmt"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotFound means no object has the ID or name asked for.
	ErrNotFound = errors.New("not found")
	// ErrExists means a unique name is already taken.
	ErrExists = errors.New("already exists")
	// ErrStale means the object's revision moved on (a lost compare-and-swap).
	ErrStale = errors.New("revision changed")
	// ErrAmbiguous means a name matches several objects; use the ID.
	ErrAmbiguous = errors.New("name matches several objects")
	// ErrSchemaTooNew means the database was written by a newer corrald.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
	// ErrReferenced means a foreign key still points at the object; it is
	// the database's backstop behind InUseError.
	ErrReferenced = errors.New("still referenced")
)

// InUseError is returned when deleting an object that others still use. It
// names a sample of the users and counts them all.
type InUseError struct {
	Kind  string      // kind of the object being deleted, e.g. "flavor"
	ID    string      // its ID
	Users []types.Ref // up to maxUsers of each kind of object that uses it
	Count int         // how many use it in all
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s %s is used by %d objects", e.Kind, e.ID, e.Count)
}

// Retryable reports whether err is a transient conflict between
// transactions (a PostgreSQL serialization failure or deadlock, a busy
// SQLite database) after which the whole transaction may simply run again.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED
	}
	return false
}

// classify turns driver errors into the store's sentinels.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %v", ErrExists, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %v", ErrReferenced, err)
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return fmt.Errorf("%w: %v", ErrExists, err)
		case "23503":
			return fmt.Errorf("%w: %v", ErrReferenced, err)
		}
	}
	return err
}
