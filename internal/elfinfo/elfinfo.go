// Package elfinfo reads what an ELF file asks of the dynamic loader.
package elfinfo

import (
	"debug/elf"
	"fmt"
	"io"
	"strings"
)

// Interpreter is the program interpreter f names (PT_INTERP), "" when it
// names none: a static program, or a library.
func Interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data, err := io.ReadAll(p.Open())
			if err != nil {
				return "", fmt.Errorf("reading the program interpreter: %w", err)
			}
			return strings.TrimRight(string(data), "\x00"), nil
		}
	}
	return "", nil
}

// InterpreterOf is Interpreter of the ELF file at path.
func InterpreterOf(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	interp, err := Interpreter(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return interp, nil
}
