package core

import "strings"

// cmdSpec describes one command. One table drives Apply (handler, arity),
// CommandKeys (key positions), IsReadOnly and KnownCommand.
type cmdSpec struct {
	name    string
	handler func(o *op, args [][]byte) Reply
	// arity counts the name, as in Redis: n > 0 exactly n, n < 0 at least -n.
	arity int
	// readOnly commands never write.
	readOnly bool
	// first, last, step locate the keys among name+args, as in Redis's
	// COMMAND INFO: first key at index first (1 = the first argument), last
	// key at last (-1 = the last argument), every step-th in between. first
	// 0 means the command touches no key.
	first, last, step int
}

// appendSpecKeys appends the key arguments of a command of spec s to dst.
func appendSpecKeys(dst [][]byte, s *cmdSpec, args [][]byte) [][]byte {
	first, last, step := specPositions(s, len(args))
	for i := first; first > 0 && i <= last; i += step {
		dst = append(dst, args[i-1])
	}
	return dst
}

// keyPositions returns where c's keys are among its arguments (as
// CommandKeys lists them): c.Args[i-1] for i from first to last by step;
// first is 0 when there are none (or the command is unknown). It does not
// allocate.
func keyPositions(c Command) (first, last, step int) {
	s, ok := commandTable[strings.ToUpper(c.Name)]
	if !ok {
		return 0, -1, 1
	}
	return specPositions(s, len(c.Args))
}

// specPositions is keyPositions for a command of spec s with n arguments.
func specPositions(s *cmdSpec, n int) (first, last, step int) {
	if s.first == 0 || n == 0 {
		return 0, -1, 1
	}
	last = s.last
	if last < 0 {
		last = n + 1 + last
	}
	return s.first, min(last, n), s.step
}

// longKey returns the length of the first of the command's keys (as
// CommandKeys lists them) longer than max, or -1, without allocating.
func longKey(s *cmdSpec, args [][]byte, max int) int {
	first, last, step := specPositions(s, len(args))
	for i := first; first > 0 && i <= last; i += step {
		if len(args[i-1]) > max {
			return len(args[i-1])
		}
	}
	return -1
}

// commandTable maps upper-case names to specs. It is built once and never
// modified.
var commandTable = buildCommandTable()

func buildCommandTable() map[string]*cmdSpec {
	specs := []cmdSpec{}
	specs = append(specs, keyCommands()...)
	specs = append(specs, stringCommands()...)
	specs = append(specs, setCommands()...)
	specs = append(specs, listCommands()...)
	specs = append(specs, hashCommands()...)
	specs = append(specs, zsetCommands()...)
	specs = append(specs, scanCommands()...)
	specs = append(specs, indexCommands()...)
	t := make(map[string]*cmdSpec, len(specs))
	for i := range specs {
		s := &specs[i]
		if s.step == 0 {
			s.step = 1
		}
		if _, dup := t[s.name]; dup {
			panic("core: duplicate command " + s.name)
		}
		t[s.name] = s
	}
	return t
}

// CommandKeys returns the keys a command touches (for shard routing); nil
// for keyless and unknown commands.
func CommandKeys(c Command) [][]byte {
	s, ok := commandTable[strings.ToUpper(c.Name)]
	if !ok {
		return nil
	}
	return appendSpecKeys(nil, s, c.Args)
}

// AppendCommandKeys appends the keys c touches (as CommandKeys lists them)
// to dst and reports whether c is a known command and whether it is
// read-only (IsReadOnly): one table lookup for the three, and no allocation
// when dst has room (the durability tracking of --fsync=always runs it on
// every request).
func AppendCommandKeys(dst [][]byte, c Command) (keys [][]byte, known, readOnly bool) {
	s, ok := commandTable[strings.ToUpper(c.Name)]
	if !ok {
		return dst, false, false
	}
	return appendSpecKeys(dst, s, c.Args), true, s.readOnly
}

// IsReadOnly reports whether the named command never writes; false for
// unknown names.
func IsReadOnly(name string) bool {
	s, ok := commandTable[strings.ToUpper(name)]
	return ok && s.readOnly
}

// KnownCommand reports whether the store implements the named command.
func KnownCommand(name string) bool {
	_, ok := commandTable[strings.ToUpper(name)]
	return ok
}

// CommandNames returns every command name, sorted.
func CommandNames() []string {
	names := make([]string, 0, len(commandTable))
	for n := range commandTable {
		names = append(names, n)
	}
	sortStrings(names)
	return names
}
