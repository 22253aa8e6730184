package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// inspectTimeout bounds one qemu-img info run on uploaded data.
const inspectTimeout = 30 * time.Second

// imageInfo is the part of `qemu-img info --output=json` that decides
// whether uploaded data may become an image.
type imageInfo struct {
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Data struct {
			DataFile string          `json:"data-file"`
			Corrupt  bool            `json:"corrupt"`
			Encrypt  json.RawMessage `json:"encrypt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// inspectImage runs qemu-img info on a file. qemu-img probes the format
// from the content and, for qcow2, reads the header without opening a
// backing file. A file qemu-img cannot read is a 400 naming "file"; a
// missing qemu-img is a 503.
func inspectImage(ctx context.Context, qemuImg, path string) (imageInfo, error) {
	var info imageInfo
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, "info", "--output=json", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		msg := strings.TrimSpace(stderr.String())
		msg = strings.ReplaceAll(msg, path, "the upload") // the temporary path is ours, not the caller's
		return info, types.FieldError("file", "qemu-img cannot read the data: %s", msg)
	case err != nil:
		return info, types.Errorf(types.CodeUnavailable, "cannot check the image's format with %s: %v", qemuImg, err)
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, types.Errorf(types.CodeUnavailable, "cannot read the output of %s info: %v", qemuImg, err)
	}
	return info, nil
}

// checkImageData refuses data whose real format is not the declared one
// (random bytes declared qcow2; a qcow2 declared raw would hand the guest
// a qcow2 header as its disk), and a qcow2 that refers to other files
// (a backing file or an external data file: on a host these would open
// whatever path the image names), is marked corrupt, or is encrypted.
func checkImageData(ctx context.Context, qemuImg, declared, path string) error {
	info, err := inspectImage(ctx, qemuImg, path)
	if err != nil {
		return err
	}
	if info.Format != declared {
		return types.FieldError("disk_format", "the image is declared %s, but its data is %s", declared, info.Format).
			WithDetail("detected", info.Format)
	}
	d := info.FormatSpecific.Data
	switch {
	case info.BackingFilename != "":
		return types.FieldError("file", "the qcow2 data has a backing file (%q); upload a standalone image (qemu-img convert -O qcow2)",
			info.BackingFilename)
	case d.DataFile != "":
		return types.FieldError("file", "the qcow2 data has an external data file (%q); upload a standalone image", d.DataFile)
	case d.Corrupt:
		return types.FieldError("file", "the qcow2 data is marked corrupt; repair it (qemu-img check -r all) first")
	case len(d.Encrypt) > 0:
		return types.FieldError("file", "the qcow2 data is encrypted; hosts have no key for it")
	}
	return nil
}
