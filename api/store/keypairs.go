package store

import (
	"context"

	"github.com/corral-cloud/corral/api/types"
)

const prefixKeypair = "kp-"

var keypairTable = table{
	name: "keypairs", kind: "keypair", byName: true, owner: ownedByProject,
	cols:    []string{"id", "revision", "created_at", "updated_at", "name", "project_id", "key_type", "public_key", "fingerprint"},
	filters: map[string]string{"project": "project_id = ?", "name": "name = ?"},
}

// KeypairRow is a stored keypair (its public half).
type KeypairRow struct {
	rowMeta
	Name        string `db:"name"`
	ProjectID   string `db:"project_id"`
	KeyType     string `db:"key_type"`
	PublicKey   string `db:"public_key"`
	Fingerprint string `db:"fingerprint"`
}

// API converts the row to its wire form.
func (r KeypairRow) API() types.Keypair {
	return types.Keypair{Meta: r.toAPI(), Name: r.Name, ProjectID: r.ProjectID, Type: r.KeyType,
		PublicKey: r.PublicKey, Fingerprint: r.Fingerprint}
}

// CreateKeypair stores a keypair the caller has validated; a name taken
// in the project fails with ErrExists.
func (s *Store) CreateKeypair(ctx context.Context, in types.Keypair) (types.Keypair, error) {
	row := KeypairRow{rowMeta: newMeta(prefixKeypair), Name: in.Name, ProjectID: in.ProjectID, KeyType: in.Type,
		PublicKey: in.PublicKey, Fingerprint: in.Fingerprint}
	err := insertRow(ctx, s, s.wr(ctx), keypairTable, &row)
	return row.API(), err
}

// GetKeypair finds a keypair by ID or name (within ctx's project scope).
func (s *Store) GetKeypair(ctx context.Context, idOrName string) (types.Keypair, error) {
	row, err := getRow[KeypairRow](ctx, s, s.rd(ctx), keypairTable, idOrName)
	return row.API(), err
}

// ListKeypairs returns a page of keypairs. Filters: project, name.
func (s *Store) ListKeypairs(ctx context.Context, opts ListOptions) (types.List[types.Keypair], error) {
	return listAPI(ctx, s, keypairTable, opts, KeypairRow.API)
}

// DeleteKeypair deletes a keypair. Servers keep the keys they were
// created with.
func (s *Store) DeleteKeypair(ctx context.Context, id string, ifMatch int64) error {
	_, err := deleteRow[KeypairRow](ctx, s, keypairTable, id, ifMatch)
	return err
}
