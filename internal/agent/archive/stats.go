package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/stats"
)

// decodeStats decodes CRIU's stats-dump image. go-criu's own reader takes a
// directory and slices the buffer by the size the file claims, which panics
// on a short or lying file, so the header is checked here and only the
// payload is handed to go-criu's decoder.
func decodeStats(data []byte) (*DumpStats, error) {
	if len(data) < stats.PayloadOffset {
		return nil, fmt.Errorf("stats file of %d bytes is shorter than its header", len(data))
	}
	if binary.LittleEndian.Uint32(data[stats.PrimaryMagicOffset:]) != stats.ImgServiceMagic {
		return nil, errors.New("stats file has no CRIU image magic")
	}
	if binary.LittleEndian.Uint32(data[stats.SecondaryMagicOffset:]) != stats.StatsMagic {
		return nil, errors.New("stats file has no statistics magic")
	}
	size := uint64(binary.LittleEndian.Uint32(data[stats.SizeOffset:]))
	if size > uint64(len(data)-stats.PayloadOffset) {
		return nil, fmt.Errorf("stats payload of %d bytes exceeds the file", size)
	}

	var entry stats.StatsEntry
	if err := entry.UnmarshalVT(data[stats.PayloadOffset : stats.PayloadOffset+int(size)]); err != nil {
		return nil, fmt.Errorf("failed to decode stats: %w", err)
	}
	dump := entry.GetDump()
	if dump == nil {
		return nil, errors.New("stats file holds no dump statistics")
	}
	return &DumpStats{
		FreezingTime: time.Duration(dump.GetFreezingTime()) * time.Microsecond,
		FrozenTime:   time.Duration(dump.GetFrozenTime()) * time.Microsecond,
		MemdumpTime:  time.Duration(dump.GetMemdumpTime()) * time.Microsecond,
		MemwriteTime: time.Duration(dump.GetMemwriteTime()) * time.Microsecond,
		PagesScanned: clampInt64(dump.GetPagesScanned()),
		PagesWritten: clampInt64(dump.GetPagesWritten()),
	}, nil
}

func clampInt64(v uint64) int64 {
	if v > 1<<62 {
		return 1 << 62
	}
	return int64(v)
}
