package nodes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// NamespaceSpec is a namespace's entry in the catalog.
type NamespaceSpec struct {
	Name     string            `json:"name"`
	Strategy string            `json:"strategy"`
	Params   map[string]string `json:"params,omitempty"`
}

// catalogFile is the catalog's file name under the data directory.
const catalogFile = "catalog.json"

var nsName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// validNamespace checks a namespace name.
func validNamespace(name string) error {
	if !nsName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("namespace name %q: want 1-64 characters of A-Z a-z 0-9 _ . -", name)
	}
	return nil
}

type catalogDoc struct {
	Version    int             `json:"version"`
	Namespaces []NamespaceSpec `json:"namespaces"`
}

// loadCatalog reads the catalog; a missing file is an empty catalog.
func loadCatalog(dir string) ([]NamespaceSpec, error) {
	b, err := os.ReadFile(filepath.Join(dir, catalogFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return parseCatalog(b, filepath.Join(dir, catalogFile))
}

// parseCatalog decodes a catalog file's content (path names it in errors).
func parseCatalog(b []byte, path string) ([]NamespaceSpec, error) {
	var doc catalogDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	for _, ns := range doc.Namespaces {
		if err := validNamespace(ns.Name); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	return doc.Namespaces, nil
}

// saveCatalog writes the catalog durably: a temporary file, fsync, rename,
// fsync of the directory.
func saveCatalog(dir string, specs []NamespaceSpec) error {
	specs = append([]NamespaceSpec(nil), specs...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	b, err := json.MarshalIndent(catalogDoc{Version: 1, Namespaces: specs}, "", "  ")
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return writeDurable(dir, catalogFile, append(b, '\n'))
}

// writeDurable replaces dir/name with b: a temporary file, fsync, rename,
// fsync of the directory.
func writeDurable(dir, name string, b []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("%s: write: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: sync: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
