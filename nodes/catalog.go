package nodes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
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
	// Dropped are the tombstones of dropped spreading namespaces: name ->
	// the highest generation dropped (docs/cluster.md, "Dropping").
	Dropped map[string]uint64 `json:"dropped,omitempty"`
}

// GenerationParam is the reserved namespace parameter that holds a
// spreading namespace's generation: absent is generation 0. A drop leaves a
// tombstone (name, generation); a tombstone (name, G) drops every
// incarnation of name with generation <= G, and a create of a name with a
// tombstone G gets generation G+1, so a re-create wins over the older
// tombstone and the tombstone wins over the older incarnation wherever
// either is met first. The parameter is stripped before a strategy sees
// the spec.
const GenerationParam = "generation"

// specGeneration returns spec's generation (0 when absent).
func specGeneration(spec NamespaceSpec) (uint64, error) {
	v, ok := spec.Params[GenerationParam]
	if !ok {
		return 0, nil
	}
	g, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("namespace %s: parameter %s=%q: want a non-negative integer", spec.Name, GenerationParam, v)
	}
	return g, nil
}

// withGeneration returns a copy of spec whose generation is g; generation
// 0 is stored as no parameter (a catalog from before generations reads
// the same).
func withGeneration(spec NamespaceSpec, g uint64) NamespaceSpec {
	p := make(map[string]string, len(spec.Params)+1)
	for k, v := range spec.Params {
		p[k] = v
	}
	delete(p, GenerationParam)
	if g > 0 {
		p[GenerationParam] = strconv.FormatUint(g, 10)
	}
	if len(p) == 0 {
		p = nil
	}
	spec.Params = p
	return spec
}

// strategySpec is spec as its strategy sees it: without GenerationParam
// (strategies refuse parameters they do not know).
func strategySpec(spec NamespaceSpec) NamespaceSpec {
	if _, ok := spec.Params[GenerationParam]; !ok {
		return spec
	}
	return withGeneration(spec, 0)
}

// loadCatalog reads the catalog and its tombstones; a missing file is an
// empty catalog.
func loadCatalog(dir string) ([]NamespaceSpec, map[string]uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, catalogFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("catalog: %w", err)
	}
	doc, err := parseCatalogDoc(b, filepath.Join(dir, catalogFile))
	if err != nil {
		return nil, nil, err
	}
	return doc.Namespaces, doc.Dropped, nil
}

// parseCatalog decodes a catalog file's content (path names it in errors).
func parseCatalog(b []byte, path string) ([]NamespaceSpec, error) {
	doc, err := parseCatalogDoc(b, path)
	return doc.Namespaces, err
}

func parseCatalogDoc(b []byte, path string) (catalogDoc, error) {
	var doc catalogDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("catalog %s: %w", path, err)
	}
	for _, ns := range doc.Namespaces {
		if err := validNamespace(ns.Name); err != nil {
			return doc, fmt.Errorf("catalog: %w", err)
		}
		if _, err := specGeneration(ns); err != nil {
			return doc, fmt.Errorf("catalog: %w", err)
		}
	}
	for name := range doc.Dropped {
		if err := validNamespace(name); err != nil {
			return doc, fmt.Errorf("catalog: dropped: %w", err)
		}
	}
	return doc, nil
}

// saveCatalog writes the catalog and its tombstones (dropped, may be nil)
// durably: a temporary file, fsync, rename, fsync of the directory.
func saveCatalog(dir string, specs []NamespaceSpec, dropped map[string]uint64) error {
	specs = append([]NamespaceSpec(nil), specs...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	if len(dropped) == 0 {
		dropped = nil
	}
	b, err := json.MarshalIndent(catalogDoc{Version: 1, Namespaces: specs, Dropped: dropped}, "", "  ")
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
