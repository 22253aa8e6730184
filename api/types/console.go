package types

import "time"

// Bounds of the serial console through the API.
const (
	// MaxConsoleChunk bounds the bytes of one chunk an agent uploads.
	MaxConsoleChunk = 16 << 10
	// MaxConsoleChunks bounds the chunks of one upload.
	MaxConsoleChunks = 64
	// ConsoleKeep is how much of each server's console corrald keeps: the
	// newest output, cut at a line start.
	ConsoleKeep = 64 << 10
	// DefaultConsoleTail and MaxConsoleLines bound the lines of one answer.
	DefaultConsoleTail = 100
	MaxConsoleLines    = 2000
)

// ConsoleChunk is new serial console output of one guest, as its host's
// agent read it from the guest's console log (POST
// /v1/hosts/{id}/guests/console).
type ConsoleChunk struct {
	ServerID string `json:"server_id"`
	// Offset is where Data starts in the console log on the host. corrald
	// keeps what follows the end of the last chunk it took, so that a
	// chunk sent twice (a lost answer, an agent restart) is kept once.
	Offset int64 `json:"offset"`
	// Reset says the log restarted (rotated or made anew) since the
	// agent's last chunk: Offset counts from the new log's start.
	Reset bool `json:"reset,omitempty"`
	// Data is the raw output (base64 in JSON), at most MaxConsoleChunk
	// bytes.
	Data []byte `json:"data"`
}

// ConsoleUpload is an agent's upload of console output.
type ConsoleUpload struct {
	Chunks []ConsoleChunk `json:"chunks"`
}

// Console is the tail of a server's serial console (GET
// /v1/servers/{id}/console).
type Console struct {
	// Lines are whole lines, oldest first, without their line ends.
	Lines []string `json:"lines"`
	// Truncated says older output exists that Lines do not hold (cut by
	// tail, or no longer kept by corrald).
	Truncated bool `json:"truncated"`
	// Partial is the last line so far, not yet ended by a newline (a
	// shell prompt, say); it comes again in Lines once it is whole.
	Partial string `json:"partial,omitempty"`
	// Next is the cursor after Lines: ?after=Next answers what follows.
	Next int64 `json:"next"`
	// UpdatedAt is when the host's agent last sent output.
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// Bounds of console input.
const (
	// MaxConsoleInput bounds the bytes of one input.
	MaxConsoleInput = 1024
	// MaxConsoleInputQueue bounds the inputs waiting for a server's agent.
	MaxConsoleInputQueue = 64
)

// ConsoleInput is text to type into a VM's serial console (POST
// /v1/servers/{id}/console/input): sent as is, so a command needs its
// "\n"; control characters (such as "\u0003", Ctrl-C) are allowed.
type ConsoleInput struct {
	Data string `json:"data"`
}

// ConsoleInputFor is one input for a guest, as its host's agent takes it.
type ConsoleInputFor struct {
	ServerID string `json:"server_id"`
	Data     string `json:"data"`
}

// ConsoleInputs are the inputs a host's agent took (POST
// /v1/hosts/{id}/guests/console/input), oldest first per server.
type ConsoleInputs struct {
	Inputs []ConsoleInputFor `json:"inputs"`
}
