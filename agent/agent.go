package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// DefaultHeartbeatInterval is the time between heartbeats.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultRequestTimeout bounds one call to corrald.
	DefaultRequestTimeout = 10 * time.Second
)

// Prober measures the host the agent runs on. HostProbe is the real one.
type Prober interface {
	// Inventory returns what the host has and its capabilities, sorted.
	// It only reads, and fails when a figure the API requires (CPUs, RAM,
	// disk) cannot be measured.
	Inventory(ctx context.Context) (types.Inventory, []string, error)
	// Usage returns the host's current usage. When some figure cannot be
	// measured it returns the others along with the error.
	Usage(ctx context.Context) (types.Usage, error)
}

// Config configures an Agent. Endpoint, Name, Region, Zone and StateDir are
// required; RegistrationTokenFile is required unless StateDir already holds
// a credential.
type Config struct {
	// Endpoint is corrald's URL, e.g. "https://corral.example:8440".
	Endpoint string
	// RegistrationTokenFile holds a registrar (or admin) token. It is read
	// at every registration, so it may be rotated while the agent runs.
	RegistrationTokenFile string
	// Name is the host's name; registering an existing name takes over
	// that host and its ID.
	Name string
	// Region and Zone place the host; IDs or names.
	Region, Zone string
	// Aggregates are the host's aggregates; IDs or names.
	Aggregates []string
	// StateDir keeps the state file (the host ID and agent token).
	StateDir string
	// MachineIDFile holds the machine's identity (default
	// /etc/machine-id). With the state directory's path it makes the
	// machine identity sent at registration, by which corrald gives an
	// agent that lost its state (or was renamed) its host record back.
	MachineIDFile string
	// HeartbeatInterval is the time between heartbeats (default 5 s).
	HeartbeatInterval time.Duration
	// RequestTimeout bounds every call to corrald (default 10 s).
	RequestTimeout time.Duration
	// Backoff paces retries while corrald is unreachable or refuses the
	// agent (default DefaultBackoff).
	Backoff *Backoff
	// Version is the agent's version, sent at registration.
	Version string
	// Prober measures the host (default NewHostProbe(StateDir)).
	Prober Prober
	// Clock tells time and sleeps (default RealClock).
	Clock Clock
	// HTTPClient talks to corrald (default: api/client's).
	HTTPClient *http.Client
	// Logger receives the agent's log (default slog.Default()).
	Logger *slog.Logger
	// Guests, when set, runs the host's guests: the agent watches the
	// host's desired guests and reconciles them through it.
	Guests GuestDriver
	// WatchWait is how long one watch call waits (default 30 s).
	WatchWait time.Duration
	// Resync re-checks every guest this often (default 30 s).
	Resync time.Duration
	// GuestWorkers bounds the guests reconciled at once (default 4).
	GuestWorkers int
	// Stats reads the guests' counters for /metrics; nil exports no
	// guest series.
	Stats GuestStater
	// Registry, when set, gets the agent's metrics: the host's
	// measurements and its guests' counters (read at each scrape), and
	// the guest loop's reconcile and watch series.
	Registry prometheus.Registerer
	// Consoles, when set with Guests, tells where the guests' serial
	// consoles are logged: the agent uploads their new output to corrald.
	// When it is also a ConsoleWriter, the agent types into the consoles
	// what users send through corrald.
	Consoles ConsoleSource
	// ConsoleInterval is how often the console logs are read (default
	// 1 s).
	ConsoleInterval time.Duration
}

// Agent is the host agent: it registers the host with corrald and then
// sends a heartbeat with measured usage every interval, for as long as its
// context lives. It never gives up because corrald is unreachable.
type Agent struct {
	cfg     Config
	api     *client.Client
	log     *slog.Logger
	clock   Clock
	backoff *Backoff

	// state is written only by Run's goroutine; mu guards those writes
	// against HostID, which may be called from any goroutine.
	mu    sync.Mutex
	state State

	usageFailing bool // the last usage measurement failed (logged once)
	metrics      *loopMetrics
	// guests is the guest loop, once it runs (guarded by mu).
	guests *guestLoop
}

// New checks cfg, creates the state directory and loads the saved state.
// A state file that cannot be parsed is reported and ignored: the agent
// registers again, which keeps the host's ID (registration is by name).
func New(cfg Config) (*Agent, error) {
	var missing []string
	for _, f := range []struct{ name, val string }{
		{"endpoint", cfg.Endpoint}, {"name", cfg.Name}, {"region", cfg.Region}, {"zone", cfg.Zone}, {"state directory", cfg.StateDir},
	} {
		if strings.TrimSpace(f.val) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("agent config: missing %s", strings.Join(missing, ", "))
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Backoff == nil {
		b := DefaultBackoff()
		cfg.Backoff = &b
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.WatchWait <= 0 {
		cfg.WatchWait = DefaultWatchWait
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.GuestWorkers <= 0 {
		cfg.GuestWorkers = DefaultGuestWorkers
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	if cfg.Prober == nil {
		cfg.Prober = NewHostProbe(cfg.StateDir)
	}
	if cfg.MachineIDFile == "" {
		cfg.MachineIDFile = DefaultMachineIDFile
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, backoff: cfg.Backoff, metrics: newLoopMetrics(cfg.Registry)}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(newHostCollector(a)); err != nil {
			return nil, fmt.Errorf("agent metrics: %w", err)
		}
	}
	st, err := loadState(cfg.StateDir)
	if err != nil {
		a.log.Warn("ignoring unreadable agent state; the host will register again", "error", err)
	}
	if st.Name != "" && st.Name != cfg.Name {
		a.log.Warn("saved state is for another host name; registering as the new name",
			"saved_name", st.Name, "name", cfg.Name, "saved_host_id", st.HostID)
		st = State{}
	}
	a.state = st
	if !st.valid() && cfg.RegistrationTokenFile == "" {
		return nil, fmt.Errorf("no credential saved in %s and no registration token file: the host cannot register",
			filepath.Join(cfg.StateDir, StateFile))
	}
	a.api = client.New(cfg.Endpoint, "", cfg.HTTPClient)
	a.api.UserAgent = "corral-agent/" + cfg.Version
	return a, nil
}

// HostID returns the host's ID, or "" before the first registration. It is
// safe to call while Run runs.
func (a *Agent) HostID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.HostID
}

// Client returns a client of corrald that authenticates as this host's
// agent (with the current agent token). It is safe to call while Run runs.
func (a *Agent) Client() *client.Client {
	_, token := a.credentials()
	return a.api.WithToken(token)
}

// setState replaces the agent's state.
func (a *Agent) setState(s State) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state = s
}

// dropToken forgets the agent token, so that Run registers again.
func (a *Agent) dropToken() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state.Token = ""
}

// Run registers the host unless the saved state still describes it, then
// heartbeats every interval until ctx is done, and returns nil then. It is
// called once.
//
// Failures never end Run: while corrald is unreachable or answers 5xx,
// the agent retries with capped exponential backoff; when it rejects the
// agent's credential (401, or 403 for another host's ID) the agent
// registers again; other refusals are logged with corrald's message and
// retried, since an operator can fix them (create the region, issue a new
// registrar token) without touching the host.
//
// With Config.Guests set, the guest loop (guests.go) starts after the first
// registration, because it needs the host ID and credential; it reads them
// anew for every call, so re-registrations carry over.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "name", a.cfg.Name, "endpoint", a.cfg.Endpoint,
		"state_dir", a.cfg.StateDir, "heartbeat_interval", a.cfg.HeartbeatInterval, "version", a.cfg.Version)
	checked := false // whether the saved registration was compared with the host
	var guests sync.WaitGroup
	started := false
	for ctx.Err() == nil {
		if !checked || !a.state.valid() {
			if wait, err := a.ensureRegistered(ctx); err != nil {
				a.clock.Sleep(ctx, wait)
				continue
			}
			checked = true
		}
		if !started && a.cfg.Guests != nil {
			// The guest loop needs the host ID and credential; it reads
			// them anew for every call, so re-registrations carry over.
			started = true
			guests.Add(1)
			go func() { defer guests.Done(); a.runGuests(ctx) }()
		}
		a.clock.Sleep(ctx, a.heartbeat(ctx))
	}
	// Stopping leaves every guest running: the next agent adopts them.
	guests.Wait()
	a.log.Info("agent stopped", "host_id", a.state.HostID)
	return nil
}

// registration returns the request this host registers with now.
func (a *Agent) registration(ctx context.Context) (types.HostRegister, error) {
	inv, caps, err := a.cfg.Prober.Inventory(ctx)
	if err != nil {
		return types.HostRegister{}, fmt.Errorf("probe host inventory: %w", err)
	}
	return types.HostRegister{Name: a.cfg.Name, Region: a.cfg.Region, Zone: a.cfg.Zone, Aggregates: a.cfg.Aggregates,
		Inventory: inv, Capabilities: caps, AgentVersion: a.cfg.Version, MachineID: a.machineID()}, nil
}

// DefaultMachineIDFile is where the machine's identity is read.
const DefaultMachineIDFile = "/etc/machine-id"

// machineID returns the machine identity sent at registration: a digest
// of the machine's ID (MachineIDFile) and the state directory's absolute
// path, so that two agents on one machine (test rigs) are two hosts, and
// one whose state was wiped is still the same. "" when the machine's ID
// cannot be read: corrald then matches by name only.
func (a *Agent) machineID() string {
	data, err := os.ReadFile(a.cfg.MachineIDFile)
	id := strings.TrimSpace(string(data))
	if err != nil || id == "" {
		a.log.Warn("no machine ID: an agent that loses its state is matched to its host by name only",
			"file", a.cfg.MachineIDFile, "error", err)
		return ""
	}
	return machineIdentity(id, a.cfg.StateDir)
}

// machineIdentity digests a machine ID and a state directory's absolute
// path.
func machineIdentity(machineID, stateDir string) string {
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		dir = stateDir
	}
	sum := sha256.Sum256([]byte("corral-agent\x00" + machineID + "\x00" + filepath.Clean(dir)))
	return hex.EncodeToString(sum[:16])
}

// ensureRegistered registers the host unless the saved credential was
// issued for exactly what the host would register now. On failure it logs
// why and returns how long to wait before the next attempt.
func (a *Agent) ensureRegistered(ctx context.Context) (time.Duration, error) {
	reg, err := a.registration(ctx)
	if err != nil {
		wait := a.backoff.Next()
		a.log.Error("cannot measure the host", "error", err, "retry_in", wait)
		return wait, err
	}
	digest := registrationDigest(reg)
	if a.state.valid() && a.state.Registration == digest {
		a.log.Info("resuming with the saved credential", "host_id", a.state.HostID, "registered_at", a.state.RegisteredAt)
		return 0, nil
	}
	token, err := a.readRegistrationToken()
	if err != nil {
		wait := a.backoff.Next()
		a.log.Error("cannot register", "error", err, "retry_in", wait)
		return wait, err
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	// The saved agent token (if any) proves this is the host's own agent, so
	// that re-registering a host that is still up is not a takeover.
	proof := ""
	if a.state.valid() && a.state.Name == reg.Name {
		proof = a.state.Token
	}
	out, err := a.api.WithToken(token).RegisterHost(cctx, reg, proof)
	if err == nil && (out.Token == "" || out.Host.ID == "") {
		err = errors.New("register host: corrald answered without a host ID or token")
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		wait := a.backoff.Next()
		a.logRegisterError(err, wait)
		return wait, err
	}
	a.setState(State{HostID: out.Host.ID, Name: reg.Name, Token: out.Token, Registration: digest, RegisteredAt: a.clock.Now().UTC()})
	if err := saveState(a.cfg.StateDir, a.state); err != nil {
		// Keep going with the credential in memory; a restart registers again.
		a.log.Error("registered, but cannot save the agent state", "error", err)
	}
	a.backoff.Reset()
	a.log.Info("registered", "host_id", out.Host.ID, "state", out.Host.State, "cpus", reg.Inventory.CPUs,
		"ram_mib", reg.Inventory.RAMMiB, "disk_gib", reg.Inventory.DiskGiB, "capabilities", strings.Join(reg.Capabilities, ","))
	return 0, nil
}

func (a *Agent) readRegistrationToken() (string, error) {
	if a.cfg.RegistrationTokenFile == "" {
		return "", errors.New("the saved credential no longer serves and no registration token file is configured")
	}
	data, err := os.ReadFile(a.cfg.RegistrationTokenFile)
	if err != nil {
		return "", fmt.Errorf("read registration token: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("read registration token: %s is empty", a.cfg.RegistrationTokenFile)
	}
	return token, nil
}

// logRegisterError says why a registration failed, with corrald's own
// message when it answered, and when the agent tries again.
func (a *Agent) logRegisterError(err error, wait time.Duration) {
	var apiErr *client.Error
	if !errors.As(err, &apiErr) {
		a.log.Warn("cannot reach corrald to register", "attempt", a.backoff.Failures(), "error", err, "retry_in", wait)
		return
	}
	attrs := append(apiAttrs(apiErr), "retry_in", wait)
	switch {
	case apiErr.Status == http.StatusUnauthorized:
		a.log.Error("corrald rejected the registration token (unknown, revoked or expired): put a valid registrar token in "+
			a.cfg.RegistrationTokenFile, attrs...)
	case apiErr.Status == http.StatusForbidden:
		a.log.Error("the token in "+a.cfg.RegistrationTokenFile+" may not register hosts: it needs role registrar or admin", attrs...)
	case apiErr.Status >= 400 && apiErr.Status < 500:
		a.log.Error("corrald refused the registration; fix the cause and the agent retries", attrs...)
	default:
		a.log.Warn("corrald failed to register the host", append(attrs, "attempt", a.backoff.Failures())...)
	}
}

// heartbeat sends one heartbeat and returns how long to wait before the
// next attempt.
func (a *Agent) heartbeat(ctx context.Context) time.Duration {
	start := a.clock.Now()
	// The claims of the guests running before the measurement are in it;
	// a guest that starts while it is taken counts as not yet measured,
	// which errs on the safe side of the memory failsafe.
	a.mu.Lock()
	gl := a.guests
	a.mu.Unlock()
	var claims *int64
	if gl != nil {
		n := gl.runningClaims()
		claims = &n
	}
	u, err := a.cfg.Prober.Usage(ctx)
	u.GuestClaimRAMMiB = claims
	switch {
	case err != nil && !a.usageFailing:
		a.log.Warn("cannot measure part of the host's usage; sending the rest", "error", err)
		a.usageFailing = true
	case err == nil && a.usageFailing:
		a.log.Info("usage measurement works again")
		a.usageFailing = false
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	err = a.api.WithToken(a.state.Token).Heartbeat(cctx, a.state.HostID, u)
	if ctx.Err() != nil {
		return 0
	}
	if err == nil {
		if n := a.backoff.Failures(); n > 0 {
			a.log.Info("heartbeats resumed", "failed_attempts", n)
		}
		a.backoff.Reset()
		return a.cfg.HeartbeatInterval - a.clock.Now().Sub(start)
	}
	var apiErr *client.Error
	if !errors.As(err, &apiErr) {
		wait := a.backoff.Next()
		a.log.Warn("cannot reach corrald", "attempt", a.backoff.Failures(), "error", err, "retry_in", wait)
		return wait
	}
	attrs := append(apiAttrs(apiErr), "host_id", a.state.HostID)
	switch {
	case apiErr.Status == http.StatusUnauthorized, apiErr.Status == http.StatusNotFound:
		// The credential was revoked, or the host deleted with it.
		wait := a.backoff.Next()
		a.log.Warn("corrald no longer accepts the agent credential; registering again", append(attrs, "retry_in", wait)...)
		a.dropToken()
		return wait
	case apiErr.Status == http.StatusForbidden:
		// The credential belongs to another host: the state is not ours.
		wait := a.backoff.Next()
		a.log.Error("corrald refused the heartbeat for this host ID; registering again", append(attrs, "retry_in", wait)...)
		a.dropToken()
		return wait
	case apiErr.Status >= 400 && apiErr.Status < 500:
		a.log.Error("corrald rejected the heartbeat", append(attrs, "retry_in", a.cfg.HeartbeatInterval)...)
		return a.cfg.HeartbeatInterval
	default:
		wait := a.backoff.Next()
		a.log.Warn("corrald failed the heartbeat", append(attrs, "attempt", a.backoff.Failures(), "retry_in", wait)...)
		return wait
	}
}

// apiAttrs returns log attributes for an API error: status, code, message
// and the field it names, if any.
func apiAttrs(e *client.Error) []any {
	attrs := []any{"status", e.Status, "code", e.Body.Code, "message", e.Body.Message}
	if f, ok := e.Body.Details["field"]; ok {
		attrs = append(attrs, "field", f)
	}
	return attrs
}
