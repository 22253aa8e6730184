package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

// rowMeta is the stored form of types.Meta, embedded in every resource row.
type rowMeta struct {
	ID        string `db:"id"`
	Revision  int64  `db:"revision"`
	CreatedAt int64  `db:"created_at"`
	UpdatedAt int64  `db:"updated_at"`
}

func (m *rowMeta) meta() *rowMeta { return m }

func (m rowMeta) toAPI() types.Meta {
	return types.Meta{ID: m.ID, Revision: m.Revision, CreatedAt: fromMicros(m.CreatedAt), UpdatedAt: fromMicros(m.UpdatedAt)}
}

// newMeta returns the metadata of an object created now.
func newMeta(prefix string) rowMeta {
	now := micros(time.Now())
	return rowMeta{ID: NewID(prefix), Revision: 1, CreatedAt: now, UpdatedAt: now}
}

// metaRow is a row that embeds rowMeta.
type metaRow interface{ meta() *rowMeta }

// table describes one resource table for the generic operations below.
type table struct {
	name string // SQL table
	kind string // API kind, e.g. "flavor"
	cols []string
	// byName allows lookups by name as well as by ID.
	byName bool
	// filters maps a list filter to a SQL condition with one ? for its value.
	filters map[string]string
	// usedBy lists what keeps an object of this table from being deleted.
	usedBy []usage
	// owner, for a project-owned table, is the condition (one ? for a
	// project ID) of the rows a project's members may see; lookups and
	// lists made with a context of WithProject add it (scope.go).
	owner string
}

// usage is one kind of object that can refer to a row.
type usage struct {
	kind  string // API kind of the user, e.g. "server"
	table string // its table
	where string // condition with one ? for the referenced ID
}

func (t table) insertSQL() string {
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (:%s)", t.name, strings.Join(t.cols, ", "), strings.Join(t.cols, ", :"))
}

func (t table) updateSQL() string {
	sets := make([]string, 0, len(t.cols))
	for _, c := range t.cols {
		if c != "id" && c != "created_at" {
			sets = append(sets, c+" = :"+c)
		}
	}
	return fmt.Sprintf("UPDATE %s SET %s WHERE id = :id AND revision = :revision - 1", t.name, strings.Join(sets, ", "))
}

// ListOptions selects a page of a list.
type ListOptions struct {
	// Limit is the page size; the server bounds it.
	Limit int
	// After is the ID of the last object of the previous page.
	After string
	// Filters maps filter names (see each List method) to values.
	Filters map[string]string
}

// Page is one page of rows; Next is the ID to pass as After, "" at the end.
type Page[R any] struct {
	Items []R
	Next  string
}

func insertRow(ctx context.Context, s *Store, e sqlx.ExtContext, t table, row any) error {
	q, args, err := sqlx.Named(t.insertSQL(), row)
	if err != nil {
		return fmt.Errorf("insert %s: %w", t.kind, err)
	}
	if _, err := e.ExecContext(ctx, s.rb(q), args...); err != nil {
		return fmt.Errorf("insert %s: %w", t.kind, classify(err))
	}
	return nil
}

// getRow finds a row by ID, or by name where the table allows it.
func getRow[R any](ctx context.Context, s *Store, q sqlx.QueryerContext, t table, idOrName string) (R, error) {
	return getRowLock[R](ctx, s, q, t, idOrName, "")
}

// lockRow is getRow inside a write transaction: on PostgreSQL it locks the
// row until the transaction ends (SQLite transactions already exclude each
// other).
func lockRow[R any](ctx context.Context, s *Store, tx *Tx, t table, idOrName string) (R, error) {
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	return getRowLock[R](ctx, s, tx, t, idOrName, lock)
}

func getRowLock[R any](ctx context.Context, s *Store, q sqlx.QueryerContext, t table, idOrName, lock string) (R, error) {
	var row R
	where, args := "id = ?", []any{idOrName}
	if t.byName {
		where, args = "(id = ? OR name = ?)", []any{idOrName, idOrName}
	}
	if cond, arg := t.scope(ctx); cond != "" {
		where, args = where+" AND "+cond, append(args, arg...)
	}
	if !t.byName {
		err := sqlx.GetContext(ctx, q, &row, s.rb("SELECT * FROM "+t.name+" WHERE "+where+lock), args...)
		if errors.Is(err, sql.ErrNoRows) {
			return row, NotFound(t.kind, idOrName)
		}
		if err != nil {
			return row, fmt.Errorf("get %s %s: %w", t.kind, idOrName, err)
		}
		return row, nil
	}
	// One query answers both: an ID match wins, else a name must be unique.
	var rows []R
	if err := sqlx.SelectContext(ctx, q, &rows, s.rb("SELECT * FROM "+t.name+" WHERE "+where+" LIMIT 3"+lock), args...); err != nil {
		return row, fmt.Errorf("get %s %s: %w", t.kind, idOrName, err)
	}
	for i := range rows {
		if any(&rows[i]).(metaRow).meta().ID == idOrName {
			return rows[i], nil
		}
	}
	switch len(rows) {
	case 0:
		return row, NotFound(t.kind, idOrName)
	case 1:
		return rows[0], nil
	}
	return row, fmt.Errorf("%s %q: %w", t.kind, idOrName, ErrAmbiguous)
}

func listRows[R any](ctx context.Context, s *Store, t table, opts ListOptions) (Page[R], error) {
	var where []string
	var args []any
	for k, v := range opts.Filters {
		cond, ok := t.filters[k]
		if !ok {
			return Page[R]{}, fmt.Errorf("list %s: unknown filter %q", t.kind, k)
		}
		where = append(where, cond)
		args = append(args, v)
	}
	if cond, arg := t.scope(ctx); cond != "" {
		where = append(where, cond)
		args = append(args, arg...)
	}
	if opts.After != "" {
		where = append(where, "id > ?")
		args = append(args, opts.After)
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	q := "SELECT * FROM " + t.name
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY id LIMIT %d", limit+1)
	var rows []R
	if err := sqlx.SelectContext(ctx, s.rd(ctx), &rows, s.rb(q), args...); err != nil {
		return Page[R]{}, fmt.Errorf("list %s: %w", t.kind, err)
	}
	var p Page[R]
	if len(rows) > limit {
		rows = rows[:limit]
		p.Next = any(&rows[limit-1]).(metaRow).meta().ID
	}
	p.Items = rows
	return p, nil
}

// updateRow reads a row, lets apply change it and writes it back, in one
// transaction that holds the row. With ifMatch > 0 the row must be at that
// revision, else ErrStale.
func updateRow[R any, P interface {
	*R
	metaRow
}](ctx context.Context, s *Store, t table, idOrName string, ifMatch int64, apply func(P) error) (R, error) {
	var zero R
	tx, err := s.begin(ctx)
	if err != nil {
		return zero, fmt.Errorf("update %s: %w", t.kind, err)
	}
	defer tx.Rollback()
	row, err := lockRow[R](ctx, s, tx, t, idOrName)
	if err != nil {
		return row, err
	}
	m := P(&row).meta()
	if ifMatch > 0 && m.Revision != ifMatch {
		return row, fmt.Errorf("%s %s is at revision %d, not %d: %w", t.kind, m.ID, m.Revision, ifMatch, ErrStale)
	}
	if err := apply(&row); err != nil {
		return row, err
	}
	m.Revision++
	m.UpdatedAt = micros(time.Now())
	q, args, err := sqlx.Named(t.updateSQL(), &row)
	if err != nil {
		return row, fmt.Errorf("update %s: %w", t.kind, err)
	}
	res, err := tx.ExecContext(ctx, s.rb(q), args...)
	if err != nil {
		return row, fmt.Errorf("update %s %s: %w", t.kind, m.ID, classify(err))
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return row, fmt.Errorf("update %s %s: %w", t.kind, m.ID, ErrStale)
	}
	if err := tx.Commit(); err != nil {
		return row, fmt.Errorf("update %s %s: %w", t.kind, m.ID, err)
	}
	return row, nil
}

// maxUsers is how many users of each kind an InUseError names.
const maxUsers = 10

// checkUsers returns an InUseError if anything still uses id.
func checkUsers(ctx context.Context, s *Store, q sqlx.QueryerContext, t table, id string) error {
	var users []types.Ref
	count := 0
	for _, u := range t.usedBy {
		var n int
		if err := sqlx.GetContext(ctx, q, &n, s.rb("SELECT COUNT(*) FROM "+u.table+" WHERE "+u.where), id); err != nil {
			return fmt.Errorf("check users of %s %s: %w", t.kind, id, err)
		}
		if n == 0 {
			continue
		}
		count += n
		var refs []struct {
			ID   string `db:"id"`
			Name string `db:"name"`
		}
		if err := sqlx.SelectContext(ctx, q, &refs, s.rb(fmt.Sprintf("SELECT id, name FROM %s WHERE %s ORDER BY id LIMIT %d",
			u.table, u.where, maxUsers)), id); err != nil {
			return fmt.Errorf("check users of %s %s: %w", t.kind, id, err)
		}
		for _, r := range refs {
			users = append(users, types.Ref{Kind: u.kind, ID: r.ID, Name: r.Name})
		}
	}
	if count > 0 {
		return &InUseError{Kind: t.kind, ID: id, Users: users, Count: count}
	}
	return nil
}

// deleteRow deletes a row after checking that nothing uses it, in one
// transaction so that no user can appear in between (foreign keys are the
// backstop on PostgreSQL's concurrent writers).
func deleteRow[R any, P interface {
	*R
	metaRow
}](ctx context.Context, s *Store, t table, idOrName string, ifMatch int64) (R, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		var zero R
		return zero, fmt.Errorf("delete %s: %w", t.kind, err)
	}
	defer tx.Rollback()
	row, err := lockRow[R](ctx, s, tx, t, idOrName)
	if err != nil {
		return row, err
	}
	m := P(&row).meta()
	if ifMatch > 0 && m.Revision != ifMatch {
		return row, fmt.Errorf("%s %s is at revision %d, not %d: %w", t.kind, m.ID, m.Revision, ifMatch, ErrStale)
	}
	if err := checkUsers(ctx, s, tx, t, m.ID); err != nil {
		return row, err
	}
	if _, err := tx.ExecContext(ctx, s.rb("DELETE FROM "+t.name+" WHERE id = ?"), m.ID); err != nil {
		return row, fmt.Errorf("delete %s %s: %w", t.kind, m.ID, classify(err))
	}
	return row, tx.Commit()
}
