package archive

import (
	"encoding/binary"
	"fmt"
	"strings"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"google.golang.org/protobuf/proto"
)

// Magic numbers of CRIU images (criu/include/magic.h): most images start
// with the common or service magic, then their own.
const (
	imgCommonMagic  = 0x54564319
	imgServiceMagic = 0x55105940
	pstreeMagic     = 0x50273030
)

// maxProcesses bounds the process tree an archive may describe.
const maxProcesses = 65536

// parsePstree decodes pstree.img: each entry is a little-endian 32-bit size
// followed by a PstreeEntry protobuf.
func parsePstree(data []byte) ([]*pstree.PstreeEntry, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("image is %d bytes, shorter than its magic", len(data))
	}
	magic := binary.LittleEndian.Uint32(data)
	data = data[4:]
	if magic == imgCommonMagic || magic == imgServiceMagic {
		if len(data) < 4 {
			return nil, fmt.Errorf("image ends inside its magic")
		}
		magic = binary.LittleEndian.Uint32(data)
		data = data[4:]
	}
	if magic != pstreeMagic {
		return nil, fmt.Errorf("magic %#x is not the process tree's (%#x)", magic, pstreeMagic)
	}
	var out []*pstree.PstreeEntry
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, fmt.Errorf("entry %d is truncated", len(out)+1)
		}
		size := binary.LittleEndian.Uint32(data)
		data = data[4:]
		if uint64(size) > uint64(len(data)) {
			return nil, fmt.Errorf("entry %d claims %d bytes, %d remain", len(out)+1, size, len(data))
		}
		entry := &pstree.PstreeEntry{}
		if err := proto.Unmarshal(data[:size], entry); err != nil {
			return nil, fmt.Errorf("entry %d: %w", len(out)+1, err)
		}
		data = data[size:]
		out = append(out, entry)
		if len(out) > maxProcesses {
			return nil, fmt.Errorf("more than %d processes", maxProcesses)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no process")
	}
	return out, nil
}

// checkProcessImages checks that the images CRIU restores each process of
// the tree from are present: core-<tid>.img for every thread, and mm, pagemap
// and ids of every process.
func checkProcessImages(info *Info, tree []*pstree.PstreeEntry) error {
	var missing []string
	need := func(name string) {
		if _, ok := info.Files[metadata.CheckpointDirectory+"/"+name]; !ok {
			missing = append(missing, metadata.CheckpointDirectory+"/"+name)
		}
	}
	for _, p := range tree {
		pid := p.GetPid()
		info.Processes = append(info.Processes, int(pid))
		threads := p.GetThreads()
		if len(threads) == 0 {
			threads = []uint32{pid}
		}
		for _, tid := range threads {
			need(fmt.Sprintf("core-%d.img", tid))
		}
		for _, kind := range []string{"mm", "pagemap", "ids"} {
			need(fmt.Sprintf("%s-%d.img", kind, pid))
		}
	}
	if len(missing) > 0 {
		shown := missing[:min(len(missing), 5)]
		more := ""
		if len(missing) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(missing)-len(shown))
		}
		return invalid(pstreeImage, "the process tree names images that are missing: %s%s",
			strings.Join(shown, ", "), more)
	}
	return nil
}
