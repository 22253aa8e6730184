package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"
)

// dbtx is what store methods run statements on: a connection pool, or the
// request's transaction when the context carries one.
type dbtx interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

var (
	_ dbtx = (*sqlx.DB)(nil)
	_ dbtx = (*Tx)(nil)
)

// Tx is a store transaction. Inside a request transaction (see Begin) it is
// a savepoint of that transaction: Commit releases the savepoint and the
// work becomes durable only when the request commits; Rollback undoes just
// the savepoint's work, so that a caller may recover from a failed step
// (on PostgreSQL a failed statement would otherwise abort the whole
// request). Rollback after Commit does nothing, so `defer tx.Rollback()`
// is always safe.
type Tx struct {
	*sqlx.Tx
	sp   string // savepoint name; "" for a top-level transaction
	done bool
}

// Commit ends the transaction or releases the savepoint.
func (t *Tx) Commit() error {
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	if t.sp != "" {
		_, err := t.Tx.Exec("RELEASE SAVEPOINT " + t.sp)
		return err
	}
	return t.Tx.Commit()
}

// Rollback undoes the transaction or the savepoint's work; it does nothing
// once Commit or Rollback ran.
func (t *Tx) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	if t.sp != "" {
		if _, err := t.Tx.Exec("ROLLBACK TO SAVEPOINT " + t.sp); err != nil {
			return err
		}
		_, err := t.Tx.Exec("RELEASE SAVEPOINT " + t.sp)
		return err
	}
	return t.Tx.Rollback()
}

// RequestTx is one API request's transaction: every store call made with a
// context from Begin joins it, so that the change, the idempotency key's
// answer and the audit entry commit together or not at all.
type RequestTx struct {
	tx *sqlx.Tx

	mu    sync.Mutex
	n     int      // savepoints taken, for unique names
	after []func() // run after a successful commit
	done  bool
}

type requestTxKey struct{}

// Begin opens a request transaction and returns a context that carries it.
// The caller must Commit or Rollback it. On SQLite it takes the database's
// single write connection for its whole life: keep requests short.
func (s *Store) Begin(ctx context.Context) (context.Context, *RequestTx, error) {
	if rt := requestTx(ctx); rt != nil {
		return ctx, nil, errors.New("store: a request transaction is already open")
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return ctx, nil, fmt.Errorf("begin: %w", classify(err))
	}
	rt := &RequestTx{tx: tx}
	return context.WithValue(ctx, requestTxKey{}, rt), rt, nil
}

// Commit commits the request's work, then runs the functions registered
// with AfterCommit.
func (rt *RequestTx) Commit() error {
	rt.mu.Lock()
	if rt.done {
		rt.mu.Unlock()
		return sql.ErrTxDone
	}
	rt.done = true
	after := rt.after
	rt.after = nil
	rt.mu.Unlock()
	if err := rt.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", classify(err))
	}
	for _, f := range after {
		f()
	}
	return nil
}

// Rollback undoes the request's work and drops its AfterCommit functions.
// It does nothing after Commit.
func (rt *RequestTx) Rollback() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.done {
		return nil
	}
	rt.done = true
	rt.after = nil
	return rt.tx.Rollback()
}

// requestTx returns the open request transaction ctx carries, or nil (also
// once it has ended, so that work started from a request's context after
// its end runs on its own).
func requestTx(ctx context.Context) *RequestTx {
	rt, _ := ctx.Value(requestTxKey{}).(*RequestTx)
	if rt == nil {
		return nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.done {
		return nil
	}
	return rt
}

// AfterCommit runs f once the request transaction in ctx has committed (it
// is dropped if the transaction rolls back), or at once if ctx carries
// none. Wake-ups of watchers and cache invalidations go here, so that no one
// is told of a change before it can be read.
func AfterCommit(ctx context.Context, f func()) {
	if rt := requestTx(ctx); rt != nil {
		rt.mu.Lock()
		if !rt.done {
			rt.after = append(rt.after, f)
			rt.mu.Unlock()
			return
		}
		rt.mu.Unlock()
	}
	f()
}

// Detach returns a context with ctx's values and deadline but without its
// request transaction, for work that must outlive the request or must not
// be undone with it.
func Detach(ctx context.Context) context.Context {
	if requestTx(ctx) == nil {
		return ctx
	}
	return detached{ctx}
}

type detached struct{ context.Context }

func (d detached) Value(key any) any {
	if _, ok := key.(requestTxKey); ok {
		return nil
	}
	return d.Context.Value(key)
}

// begin starts a transaction for one store method: a savepoint inside the
// request transaction when ctx carries one, else a transaction of its own.
func (s *Store) begin(ctx context.Context) (*Tx, error) {
	if rt := requestTx(ctx); rt != nil {
		rt.mu.Lock()
		if rt.done {
			rt.mu.Unlock()
			return nil, sql.ErrTxDone
		}
		rt.n++
		sp := fmt.Sprintf("sp%d", rt.n)
		rt.mu.Unlock()
		if _, err := rt.tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
			return nil, fmt.Errorf("savepoint: %w", classify(err))
		}
		return &Tx{Tx: rt.tx, sp: sp}, nil
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", classify(err))
	}
	return &Tx{Tx: tx}, nil
}

// wr is where a single write statement runs: the request transaction, or
// the write pool.
func (s *Store) wr(ctx context.Context) dbtx {
	if rt := requestTx(ctx); rt != nil {
		return &Tx{Tx: rt.tx}
	}
	return s.w
}

// rd is where reads run: the request transaction (so a request reads its
// own writes and, on SQLite, does not wait for a second connection), or
// the read pool.
func (s *Store) rd(ctx context.Context) dbtx {
	if rt := requestTx(ctx); rt != nil {
		return &Tx{Tx: rt.tx}
	}
	return s.r
}
