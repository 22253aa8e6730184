package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// StateFile is the name of the agent's state file in its state directory.
const StateFile = "state.json"

// State is what the agent keeps across restarts: the identity and
// credential corrald issued at registration. It holds a secret and is
// written with mode 0600.
type State struct {
	// HostID is the ID corrald gave the host.
	HostID string `json:"host_id"`
	// Name is the host name it was registered under.
	Name string `json:"name"`
	// Token is the host-scoped agent token.
	Token string `json:"token"`
	// Registration is a digest of the registration request the token was
	// issued for; when the host's inventory, placement or agent version
	// change, the agent registers again to tell corrald.
	Registration string `json:"registration"`
	// RegisteredAt is when corrald accepted that registration.
	RegisteredAt time.Time `json:"registered_at"`
}

// valid reports whether s holds a credential to heartbeat with.
func (s State) valid() bool { return s.HostID != "" && s.Token != "" }

// loadState reads the state file in dir. A missing file is an empty state
// and no error.
func loadState(dir string) (State, error) {
	var s State
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read agent state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("read agent state %s: %w", filepath.Join(dir, StateFile), err)
	}
	return s, nil
}

// saveState writes s to dir atomically (temporary file, fsync, rename), so
// that a crash leaves either the old or the new state, never half of one.
func saveState(dir string, s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, StateFile+".*")
	if err != nil {
		return fmt.Errorf("write agent state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write agent state: %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write agent state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write agent state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write agent state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, StateFile)); err != nil {
		return fmt.Errorf("write agent state: %w", err)
	}
	return nil
}

// registrationDigest identifies a registration request, so that an agent
// restarted on an unchanged host can tell that its saved credential still
// describes it.
func registrationDigest(r types.HostRegister) string {
	data, _ := json.Marshal(r) // maps marshal with sorted keys: stable
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
