package security

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

const secretUsage = `Usage: dialkv secret password < FILE     (or type the password, then Enter)
       dialkv secret token
       dialkv secret gossip-key

Makes the entries of an --auth-file policy (docs/security.md):
  password  reads one password from standard input (first line) and prints
            its argon2id hash, for "users": {"NAME": {"password": "HASH"}}
  token     prints a fresh bearer token on the first line (give it to the
            client, e.g. in a --token-file) and its SHA-256 digest on the
            second, for "tokens": {"NAME": {"sha256": "DIGEST"}}
  gossip-key  prints a fresh 32-byte gossip key in base64 (AES-256-GCM);
            put it in the --gossip-key-file of every member
`

// SecretMain runs `dialkv secret`. The password is read from stdin so that
// it never sits in a command line or shell history.
func SecretMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, secretUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, secretUsage)
		return 0
	case "password":
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintf(stderr, "dialkv secret: reading the password: %v\n", err)
			return 1
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			fmt.Fprintln(stderr, "dialkv secret: empty password")
			return 1
		}
		h, err := HashPassword(Secret(pw), DefaultHashParams)
		if err != nil {
			fmt.Fprintf(stderr, "dialkv secret: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, h)
		return 0
	case "token":
		tok, digest, err := NewToken()
		if err != nil {
			fmt.Fprintf(stderr, "dialkv secret: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, tok.Reveal())
		fmt.Fprintln(stdout, digest)
		return 0
	case "gossip-key":
		k, err := NewGossipKey()
		if err != nil {
			fmt.Fprintf(stderr, "dialkv secret: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, k.Reveal())
		return 0
	}
	fmt.Fprintf(stderr, "dialkv secret: unknown %q\n%s", args[0], secretUsage)
	return 2
}
