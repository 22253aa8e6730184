package agent_test

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/baremetal/agent"
)

var driveFiles = []types.ConfigDriveFile{
	{Path: "meta-data", Data: []byte("instance-id: srv-1\nlocal-hostname: metal-1\n")},
	{Path: "user-data", Data: []byte("#cloud-config\n")},
	{Path: "openstack/latest/meta_data.json", Data: []byte(`{"uuid":"srv-1"}`)},
	{Path: "openstack/latest/big", Data: []byte(strings.Repeat("x", 5000))},
}

// TestISO: the image is an ISO 9660 filesystem with the label and files
// as Linux's tools read it (isoinfo and blkid, when installed).
func TestISO(t *testing.T) {
	img, err := agent.ISO("cidata", driveFiles, time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(img)%2048 != 0 || string(img[16*2048+1:16*2048+6]) != "CD001" {
		t.Fatalf("not an ISO 9660 image (%d bytes)", len(img))
	}
	file := filepath.Join(t.TempDir(), "drive.iso")
	if err := os.WriteFile(file, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("blkid"); err == nil {
		out, err := exec.Command("blkid", "-p", "-o", "export", file).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "TYPE=iso9660") || !strings.Contains(string(out), "LABEL=cidata") {
			t.Errorf("blkid: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Log("isoinfo not installed: files not read back")
		return
	}
	for _, f := range driveFiles {
		name := "/" + strings.ToUpper(f.Path) + ";1"
		out, err := exec.Command("isoinfo", "-i", file, "-x", name).Output()
		if err != nil || string(out) != string(f.Data) {
			t.Errorf("%s read back %q, %v", name, out, err)
		}
	}
}

// disk makes a disk image file of size bytes whose first sector is mbr.
func disk(t *testing.T, size int64, first []byte) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(first, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

func mbr(parts ...[3]uint32) []byte { // type, first LBA, sectors
	b := make([]byte, 512)
	for i, p := range parts {
		e := b[446+16*i:]
		e[4] = byte(p[0])
		binary.LittleEndian.PutUint32(e[8:], p[1])
		binary.LittleEndian.PutUint32(e[12:], p[2])
	}
	b[510], b[511] = 0x55, 0xAA
	return b
}

// TestAddConfigDrive: the drive goes to a new primary partition at the
// end of the disk, 1 MiB aligned, once (a repeat reuses it); bare
// filesystems, GPT disks and full tables are refused.
func TestAddConfigDrive(t *testing.T) {
	img, _ := agent.ISO("config-2", driveFiles, time.Now())
	const size = 64 << 20
	f := disk(t, size, mbr([3]uint32{0x0e, 2048, 65536}))
	for range 2 {
		n, err := agent.AddConfigDrive(f, f, size, img)
		if err != nil || n != 2 {
			t.Fatalf("add: partition %d, %v", n, err)
		}
	}
	head := make([]byte, 512)
	f.ReadAt(head, 0)
	e := head[446+16:]
	start, n := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
	if e[4] != 0x83 || start%2048 != 0 || int64(start+n)*512 > size || int64(start+n)*512 <= size-(1<<20) || int(n)*512 < len(img) {
		t.Errorf("partition 2: type %#x, sectors %d+%d of a %d-byte disk", e[4], start, n, size)
	}
	back := make([]byte, len(img))
	f.ReadAt(back, int64(start)*512)
	if string(back) != string(img) {
		t.Error("the drive read back differs")
	}
	if head[446+32+4] != 0 {
		t.Error("a repeat added another partition")
	}

	fat := make([]byte, 512)
	copy(fat[0x36:], "FAT16   ")
	fat[510], fat[511] = 0x55, 0xAA
	for name, c := range map[string]struct {
		first []byte
		want  error
	}{
		"bare FAT":     {fat, agent.ErrNoPartitionTable},
		"no signature": {make([]byte, 512), agent.ErrNoPartitionTable},
		"GPT":          {mbr([3]uint32{0xEE, 1, 131071}), agent.ErrNoPartitionTable},
		"table full":   {mbr([3]uint32{0x83, 2048, 2048}, [3]uint32{0x83, 4096, 2048}, [3]uint32{0x83, 6144, 2048}, [3]uint32{0x83, 8192, 2048}), agent.ErrNoRoom},
		"disk full":    {mbr([3]uint32{0x83, 2048, 129000}), agent.ErrNoRoom},
	} {
		f := disk(t, size, c.first)
		if _, err := agent.AddConfigDrive(f, f, size, img); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
