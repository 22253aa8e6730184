package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// The config drive: an ISO 9660 filesystem (the format cloud-init's
// ConfigDrive and NoCloud sources mount, labelled config-2 or cidata)
// written to a partition of its own at the end of the deployed disk, as
// OpenStack Ironic's agent does. Linux shows ISO 9660 names without Rock
// Ridge in lower case and without the ";1" version, so "meta-data" is
// stored as "META-DATA;1" and read back as "meta-data".

const isoSector = 2048

// ISO renders files as an ISO 9660 image with the volume label. Paths are
// slash-separated; directories are made as needed. Names must be ASCII
// without ';' (cloud-init's names are).
func ISO(label string, files []types.ConfigDriveFile, now time.Time) ([]byte, error) {
	if label == "" || len(label) > 32 {
		return nil, fmt.Errorf("config drive label %q: 1 to 32 characters", label)
	}
	root := &isoDir{}
	for _, f := range files {
		p := strings.Trim(path.Clean("/"+f.Path), "/")
		if p == "" || strings.ContainsAny(p, ";\x00") {
			return nil, fmt.Errorf("config drive file %q: bad path", f.Path)
		}
		parts := strings.Split(p, "/")
		d := root
		for _, name := range parts[:len(parts)-1] {
			d = d.sub(name)
		}
		d.files = append(d.files, isoFile{name: parts[len(parts)-1], data: f.Data})
	}
	// Directories in path-table order (breadth first, by name).
	dirs := []*isoDir{root}
	for i := 0; i < len(dirs); i++ {
		d := dirs[i]
		sort.Slice(d.dirs, func(a, b int) bool { return d.dirs[a].name < d.dirs[b].name })
		sort.Slice(d.files, func(a, b int) bool { return d.files[a].name < d.files[b].name })
		for _, c := range d.dirs {
			c.parent = d
			dirs = append(dirs, c)
		}
	}
	for i, d := range dirs {
		d.number = i + 1
	}
	root.parent = root
	// Path tables, then directories, then file data.
	ptSize := 0
	for _, d := range dirs {
		ptSize += 8 + len(d.ident()) + len(d.ident())%2
	}
	ptSectors := (ptSize + isoSector - 1) / isoSector
	lPath, mPath := 18, 18+ptSectors
	next := 18 + 2*ptSectors
	for _, d := range dirs {
		d.size = d.recordsSize()
		d.lba = next
		next += d.size / isoSector
	}
	for _, d := range dirs {
		for i := range d.files {
			f := &d.files[i]
			if len(f.data) > 0 {
				f.lba = next
				next += (len(f.data) + isoSector - 1) / isoSector
			}
		}
	}
	img := make([]byte, next*isoSector)
	stamp := isoStamp(now)
	for _, d := range dirs {
		d.write(img[d.lba*isoSector:], stamp)
		for _, f := range d.files {
			copy(img[f.lba*isoSector:], f.data)
		}
	}
	// Path tables: little-endian (L) and big-endian (M).
	var l, m bytes.Buffer
	for _, d := range dirs {
		id := d.ident()
		for _, b := range []struct {
			buf   *bytes.Buffer
			order binary.ByteOrder
		}{{&l, binary.LittleEndian}, {&m, binary.BigEndian}} {
			b.buf.WriteByte(byte(len(id)))
			b.buf.WriteByte(0)
			binary.Write(b.buf, b.order, uint32(d.lba))
			binary.Write(b.buf, b.order, uint16(d.parent.number))
			b.buf.WriteString(id)
			if len(id)%2 == 1 {
				b.buf.WriteByte(0)
			}
		}
	}
	copy(img[lPath*isoSector:], l.Bytes())
	copy(img[mPath*isoSector:], m.Bytes())
	// Primary volume descriptor, then the set terminator.
	pvd := img[16*isoSector : 17*isoSector]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	padCopy(pvd[8:40], "LINUX")
	padCopy(pvd[40:72], label)
	both32(pvd[80:], uint32(next))
	both16(pvd[120:], 1)
	both16(pvd[124:], 1)
	both16(pvd[128:], isoSector)
	both32(pvd[132:], uint32(ptSize))
	binary.LittleEndian.PutUint32(pvd[140:], uint32(lPath))
	binary.BigEndian.PutUint32(pvd[148:], uint32(mPath))
	record(pvd[156:190], root.lba, root.size, true, "\x00", stamp)
	for _, r := range [][2]int{{190, 318}, {318, 446}, {446, 574}, {574, 702}, {702, 739}, {739, 776}, {776, 813}} {
		padCopy(pvd[r[0]:r[1]], "")
	}
	padCopy(pvd[574:702], "CORRAL CONFIG DRIVE")
	long := now.UTC().Format("20060102150405") + "00"
	for _, off := range []int{813, 830, 864} {
		copy(pvd[off:], long)
	}
	copy(pvd[847:], "0000000000000000")
	pvd[881] = 1
	term := img[17*isoSector:]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	return img, nil
}

type isoFile struct {
	name string
	data []byte
	lba  int
}

type isoDir struct {
	name      string
	parent    *isoDir
	dirs      []*isoDir
	files     []isoFile
	number    int
	lba, size int
}

func (d *isoDir) sub(name string) *isoDir {
	for _, c := range d.dirs {
		if c.name == name {
			return c
		}
	}
	c := &isoDir{name: name}
	d.dirs = append(d.dirs, c)
	return c
}

// ident is the directory's identifier: "\x00" for the root.
func (d *isoDir) ident() string {
	if d.name == "" {
		return "\x00"
	}
	return strings.ToUpper(d.name)
}

func recordLen(ident string) int { return 33 + len(ident) + (len(ident)+1)%2 }

// entries lists the directory's records: ".", "..", directories, files.
func (d *isoDir) entries() []string {
	out := []string{"\x00", "\x01"}
	for _, c := range d.dirs {
		out = append(out, c.ident())
	}
	for _, f := range d.files {
		out = append(out, strings.ToUpper(f.name)+";1")
	}
	return out
}

// recordsSize is the directory's extent size: records never cross a
// sector boundary.
func (d *isoDir) recordsSize() int {
	used := 0
	for _, id := range d.entries() {
		n := recordLen(id)
		if used%isoSector+n > isoSector {
			used += isoSector - used%isoSector
		}
		used += n
	}
	return (used + isoSector - 1) / isoSector * isoSector
}

func (d *isoDir) write(buf []byte, stamp [7]byte) {
	off := 0
	put := func(lba, size int, dir bool, id string) {
		n := recordLen(id)
		if off%isoSector+n > isoSector {
			off += isoSector - off%isoSector
		}
		record(buf[off:off+n], lba, size, dir, id, stamp)
		off += n
	}
	put(d.lba, d.size, true, "\x00")
	put(d.parent.lba, d.parent.size, true, "\x01")
	for _, c := range d.dirs {
		put(c.lba, c.size, true, c.ident())
	}
	for _, f := range d.files {
		put(f.lba, len(f.data), false, strings.ToUpper(f.name)+";1")
	}
}

// record writes one directory record.
func record(b []byte, lba, size int, dir bool, id string, stamp [7]byte) {
	b[0] = byte(recordLen(id))
	both32(b[2:], uint32(lba))
	both32(b[10:], uint32(size))
	copy(b[18:25], stamp[:])
	if dir {
		b[25] = 2
	}
	both16(b[28:], 1)
	b[32] = byte(len(id))
	copy(b[33:], id)
}

func isoStamp(t time.Time) [7]byte {
	t = t.UTC()
	return [7]byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func padCopy(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

// Errors of AddConfigDrive.
var (
	// ErrNoPartitionTable means the image is a bare filesystem (or
	// unknown): there is no table to add the config drive's partition to.
	ErrNoPartitionTable = errors.New("the image has no MBR partition table")
	// ErrNoRoom means the disk has no free primary partition slot, or no
	// free space after the image's partitions.
	ErrNoRoom = errors.New("no room for the config drive partition")
)

const (
	mbrSector = 512
	// configDriveType is the MBR type of the config drive's partition
	// (Linux; blkid and cloud-init go by the filesystem's label).
	configDriveType = 0x83
	// alignSectors aligns the partition to 1 MiB.
	alignSectors = 2048
)

// AddConfigDrive writes img (a config drive) to a new primary partition
// at the end of the disk (diskSize bytes) and adds the partition to the
// disk's MBR partition table, after the image has been written. It is
// idempotent: a partition it added before, at the same place, is reused.
// It returns the partition's number (1–4). GPT disks are refused (not
// done yet), as are images that are a bare filesystem.
func AddConfigDrive(disk io.ReaderAt, w io.WriterAt, diskSize int64, img []byte) (int, error) {
	mbr := make([]byte, mbrSector)
	if _, err := disk.ReadAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("read the partition table: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return 0, ErrNoPartitionTable
	}
	if string(mbr[0x36:0x39]) == "FAT" || string(mbr[0x52:0x57]) == "FAT32" || string(mbr[3:7]) == "NTFS" {
		return 0, fmt.Errorf("%w: it starts with a filesystem (a partitionless image)", ErrNoPartitionTable)
	}
	size := (int64(len(img)) + alignSectors*mbrSector - 1) / (alignSectors * mbrSector) * alignSectors // sectors
	total := diskSize / mbrSector
	start := (total - size) / alignSectors * alignSectors
	var usedEnd int64
	slot := -1
	for i := range 4 {
		e := mbr[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return 0, fmt.Errorf("%w: partition entry %d has status %#x", ErrNoPartitionTable, i+1, e[0])
		}
		typ := e[4]
		first, n := int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
		switch {
		case typ == 0xEE:
			return 0, fmt.Errorf("%w: a GPT disk (config drives on GPT are not supported yet)", ErrNoPartitionTable)
		case typ == 0:
			if slot < 0 {
				slot = i
			}
		case typ == configDriveType && first == start && n == size:
			slot = i // ours, from an earlier attempt
		default:
			usedEnd = max(usedEnd, first+n)
		}
	}
	if slot < 0 {
		return 0, fmt.Errorf("%w: all four primary partitions are used", ErrNoRoom)
	}
	if start < usedEnd || start <= 0 {
		return 0, fmt.Errorf("%w: the image's partitions end at sector %d, the config drive needs %d sectors of the disk's %d",
			ErrNoRoom, usedEnd, size, total)
	}
	data := make([]byte, size*mbrSector)
	copy(data, img)
	if _, err := w.WriteAt(data, start*mbrSector); err != nil {
		return 0, fmt.Errorf("write the config drive: %w", err)
	}
	e := mbr[446+16*slot : 446+16*(slot+1)]
	e[0] = 0
	copy(e[1:4], []byte{0xFE, 0xFF, 0xFF}) // CHS unused: LBA only
	e[4] = configDriveType
	copy(e[5:8], []byte{0xFE, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(e[8:], uint32(start))
	binary.LittleEndian.PutUint32(e[12:], uint32(size))
	if _, err := w.WriteAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("write the partition table: %w", err)
	}
	return slot + 1, nil
}

// writeConfigDrive renders the work's config drive and adds it to dev.
func writeConfigDrive(dev string, diskSize int64, cd *types.ConfigDrive, now time.Time) (int, error) {
	img, err := ISO(cd.Label, cd.Files, now)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := AddConfigDrive(f, f, diskSize, img)
	if err != nil {
		return 0, err
	}
	return n, f.Sync()
}
