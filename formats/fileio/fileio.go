package fileio

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mapping is a read-only memory mapping of a whole file.
type Mapping struct {
	Path string
	Data []byte
}

// MapFile maps path read-only. An empty file maps to an empty slice.
func MapFile(path string) (*Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory", path)
	}
	size := st.Size()
	if size == 0 {
		return &Mapping{Path: path}, nil
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: file of %d bytes is too large to map", path, size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return &Mapping{Path: path, Data: data}, nil
}

// Close unmaps the file.
func (m *Mapping) Close() error {
	if m.Data == nil {
		return nil
	}
	err := unix.Munmap(m.Data)
	m.Data = nil
	return err
}

// WriteAtomic writes a file through a temporary file in the same directory
// and renames it into place, so an interrupted write leaves nothing behind.
func WriteAtomic(path string, write func(f *os.File) error) (err error) {
	dir := "."
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			dir = path[:i]
			if dir == "" {
				dir = "/"
			}
			break
		}
	}
	f, err := os.CreateTemp(dir, ".squeeze-tmp-*")
	if err != nil {
		return fmt.Errorf("%s: cannot write: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
