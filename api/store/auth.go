package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/jmoiron/sqlx"
)

var tokenTable = table{
	name: "tokens", kind: "token",
	cols: []string{"id", "secret_hash", "name", "role", "project_id", "host_id", "created_at", "expires_at"},
	filters: map[string]string{
		"role":    "role = ?",
		"project": "project_id = ?",
		"host":    "host_id = ?",
	},
}

// TokenRow is a stored token: the hash of its secret, never the secret.
type TokenRow struct {
	ID         string        `db:"id"`
	SecretHash string        `db:"secret_hash"`
	Name       string        `db:"name"`
	Role       string        `db:"role"`
	ProjectID  string        `db:"project_id"`
	HostID     string        `db:"host_id"`
	CreatedAt  int64         `db:"created_at"`
	ExpiresAt  sql.NullInt64 `db:"expires_at"`
}

func (r *TokenRow) meta() *rowMeta { return &rowMeta{ID: r.ID} }

// API converts the row to its wire form.
func (r TokenRow) API() types.Token {
	t := types.Token{ID: r.ID, Name: r.Name, Role: r.Role, ProjectID: r.ProjectID, HostID: r.HostID, CreatedAt: fromMicros(r.CreatedAt)}
	if r.ExpiresAt.Valid {
		e := fromMicros(r.ExpiresAt.Int64)
		t.ExpiresAt = &e
	}
	return t
}

// Expired reports whether the token has expired at now.
func (r TokenRow) Expired(now time.Time) bool {
	return r.ExpiresAt.Valid && now.UnixMicro() >= r.ExpiresAt.Int64
}

// tokenPrefix starts every bearer token, so that leaked tokens are easy to
// find with secret scanners.
const tokenPrefix = "corral_"

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CreateToken stores a new token and returns it with its bearer string,
// which is shown only once.
func (s *Store) CreateToken(ctx context.Context, t types.Token, expiresAt *time.Time) (types.Token, string, error) {
	return s.createToken(ctx, s.wr(ctx), t, expiresAt)
}

func (s *Store) createToken(ctx context.Context, e sqlx.ExtContext, t types.Token, expiresAt *time.Time) (types.Token, string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return types.Token{}, "", err
	}
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	row := TokenRow{ID: NewID(prefixToken), SecretHash: hashSecret(secret), Name: t.Name, Role: t.Role,
		ProjectID: t.ProjectID, HostID: t.HostID, CreatedAt: micros(time.Now())}
	if expiresAt != nil {
		row.ExpiresAt = sql.NullInt64{Int64: micros(*expiresAt), Valid: true}
	}
	if err := insertRow(ctx, s, e, tokenTable, &row); err != nil {
		return types.Token{}, "", err
	}
	return row.API(), tokenPrefix + row.ID + "." + secret, nil
}

// Authenticate finds the token a bearer string names and checks its
// secret. It returns ErrNotFound for an unknown or malformed token and the
// row (which may be expired: the caller decides) otherwise.
func (s *Store) Authenticate(ctx context.Context, bearer string) (TokenRow, error) {
	rest, ok := strings.CutPrefix(bearer, tokenPrefix)
	id, secret, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || !strings.HasPrefix(id, prefixToken) {
		return TokenRow{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	var row TokenRow
	if err := s.rd(ctx).GetContext(ctx, &row, s.rb("SELECT * FROM tokens WHERE id = ?"), id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return row, fmt.Errorf("token %s: %w", id, ErrNotFound)
		}
		return row, fmt.Errorf("token %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare([]byte(row.SecretHash), []byte(hashSecret(secret))) != 1 {
		return TokenRow{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return row, nil
}

// GetToken finds a token by ID.
func (s *Store) GetToken(ctx context.Context, id string) (types.Token, error) {
	row, err := getRow[TokenRow](ctx, s, s.rd(ctx), tokenTable, id)
	return row.API(), err
}

// ListTokens returns a page of tokens. Filters: role, project, host.
func (s *Store) ListTokens(ctx context.Context, opts ListOptions) (types.List[types.Token], error) {
	return listAPI(ctx, s, tokenTable, opts, TokenRow.API)
}

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM tokens WHERE id = ?"), id)
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return nil
}

// BootstrapAdmin creates the first admin token if no admin token exists,
// and returns its bearer string ("" if one existed). Replicas starting
// together on one PostgreSQL database take turns on a lock, so exactly one
// creates it.
func (s *Store) BootstrapAdmin(ctx context.Context) (string, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return "", fmt.Errorf("bootstrap admin: %w", err)
	}
	defer tx.Rollback()
	if s.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7366258)"); err != nil {
			return "", fmt.Errorf("bootstrap admin: %w", err)
		}
	}
	var n int
	if err := tx.GetContext(ctx, &n, s.rb("SELECT COUNT(*) FROM tokens WHERE role = ?"), types.RoleAdmin); err != nil {
		return "", fmt.Errorf("bootstrap admin: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	_, secret, err := s.createToken(ctx, tx, types.Token{Name: "bootstrap-admin", Role: types.RoleAdmin}, nil)
	if err != nil {
		return "", err
	}
	return secret, tx.Commit()
}

// PurgeExpiredTokens deletes tokens that expired before before, and
// returns how many it deleted.
func (s *Store) PurgeExpiredTokens(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < ?"), micros(before))
	if err != nil {
		return 0, fmt.Errorf("purge expired tokens: %w", err)
	}
	return res.RowsAffected()
}

var auditTable = table{
	name: "audit_log", kind: "audit entry",
	cols: []string{"id", "at", "token_id", "role", "method", "path", "status", "resource_id", "request_id", "count"},
	filters: map[string]string{
		"token":    "token_id = ?",
		"resource": "resource_id = ?",
		"method":   "method = ?",
	},
}

// AuditRow is one stored audit entry.
type AuditRow struct {
	ID         string `db:"id"`
	At         int64  `db:"at"`
	TokenID    string `db:"token_id"`
	Role       string `db:"role"`
	Method     string `db:"method"`
	Path       string `db:"path"`
	Status     int    `db:"status"`
	ResourceID string `db:"resource_id"`
	RequestID  string `db:"request_id"`
	Count      int    `db:"count"`
}

func (r *AuditRow) meta() *rowMeta { return &rowMeta{ID: r.ID} }

// API converts the row to its wire form.
func (r AuditRow) API() types.AuditEntry {
	return types.AuditEntry{ID: r.ID, At: fromMicros(r.At), TokenID: r.TokenID, Role: r.Role, Method: r.Method,
		Path: r.Path, Status: r.Status, ResourceID: r.ResourceID, RequestID: r.RequestID, Count: r.Count}
}

// AppendAudit records mutating calls; it writes a batch in one statement.
// Inside a request transaction the entries commit with the request's
// change, or not at all.
func (s *Store) AppendAudit(ctx context.Context, entries []types.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	rows := make([]AuditRow, len(entries))
	for i, e := range entries {
		rows[i] = AuditRow{ID: NewID(prefixAudit), At: micros(e.At), TokenID: e.TokenID, Role: e.Role, Method: e.Method,
			Path: e.Path, Status: e.Status, ResourceID: e.ResourceID, RequestID: e.RequestID, Count: max(e.Count, 1)}
	}
	q, args, err := sqlx.Named(auditTable.insertSQL(), rows)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if _, err := s.wr(ctx).ExecContext(ctx, s.rb(q), args...); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// PurgeAudit deletes audit entries recorded before before, and returns how
// many it deleted.
func (s *Store) PurgeAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM audit_log WHERE at < ?"), micros(before))
	if err != nil {
		return 0, fmt.Errorf("purge audit log: %w", err)
	}
	return res.RowsAffected()
}

// ListAudit returns a page of audit entries, oldest first. Filters: token,
// resource, method.
func (s *Store) ListAudit(ctx context.Context, opts ListOptions) (types.List[types.AuditEntry], error) {
	return listAPI(ctx, s, auditTable, opts, AuditRow.API)
}

// IdempotencyRecord is the stored outcome of a request sent with an
// Idempotency-Key. Status 0 means the first request is still running.
type IdempotencyRecord struct {
	Principal   string `db:"principal"`
	Key         string `db:"idem_key"`
	RequestHash string `db:"request_hash"`
	Status      int    `db:"status"`
	ContentType string `db:"content_type"`
	Body        string `db:"body"`
	CreatedAt   int64  `db:"created_at"`
	// Headers is the JSON of the answer headers a replay repeats.
	Headers string `db:"headers"`
}

// TakeIdempotencyKey claims a key for a request inside the request's
// transaction. If the key is new it returns (nil, nil): the key's row is
// written (uncommitted) and the caller records the answer with
// CompleteIdempotencyKey before the transaction commits, so that the answer
// and the change it describes commit together. If another transaction holds
// the same key uncommitted, the call waits for it (PostgreSQL's unique
// index; SQLite has one writer). If the key was committed before, it returns
// that record, and the caller replays its answer. A key left without an
// answer by an older corrald (status 0) is taken over.
func (s *Store) TakeIdempotencyKey(ctx context.Context, principal, key, requestHash string) (*IdempotencyRecord, error) {
	if requestTx(ctx) == nil {
		return nil, errors.New("take idempotency key: needs a request transaction")
	}
	q := s.wr(ctx)
	for range 2 {
		res, err := q.ExecContext(ctx, s.rb(`INSERT INTO idempotency_keys
			(principal, idem_key, request_hash, status, content_type, body, created_at, headers)
			VALUES (?, ?, ?, 0, '', '', ?, '{}') ON CONFLICT (principal, idem_key) DO NOTHING`),
			principal, key, requestHash, micros(time.Now()))
		if err != nil {
			return nil, fmt.Errorf("take idempotency key: %w", classify(err))
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, nil
		}
		var rec IdempotencyRecord
		if err := q.GetContext(ctx, &rec, s.rb("SELECT * FROM idempotency_keys WHERE principal = ? AND idem_key = ?"), principal, key); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				continue // deleted (purged) between the two statements
			}
			return nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if rec.Status != 0 {
			return &rec, nil
		}
		if _, err := q.ExecContext(ctx, s.rb("DELETE FROM idempotency_keys WHERE principal = ? AND idem_key = ?"), principal, key); err != nil {
			return nil, fmt.Errorf("take over idempotency key: %w", err)
		}
	}
	return nil, fmt.Errorf("take idempotency key %q: %w", key, ErrStale)
}

// CompleteIdempotencyKey stores the answer of the request holding key:
// status, content type, body, and the headers a replay repeats. Call it in
// the request's transaction, after TakeIdempotencyKey.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, principal, key string, status int, contentType string,
	headers map[string]string, body []byte) error {
	_, err := s.wr(ctx).ExecContext(ctx, s.rb(`UPDATE idempotency_keys SET status = ?, content_type = ?, headers = ?, body = ?
		WHERE principal = ? AND idem_key = ?`), status, contentType, toJSON(headers), string(body), principal, key)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	return nil
}

// PurgeIdempotencyKeys forgets keys recorded before before.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.wr(ctx).ExecContext(ctx, s.rb("DELETE FROM idempotency_keys WHERE created_at < ?"), micros(before))
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return res.RowsAffected()
}
