package client

import "testing"

func TestHashTag(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"user42", "user42"},
		{"{user42}:cart", "user42"},
		{"x{a}y{b}", "a"},
		{"{}:k", "{}:k"},
		{"{open", "{open"},
		{"", ""},
	} {
		if got := string(hashTag([]byte(tt.key))); got != tt.want {
			t.Errorf("hashTag(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

// TestRoutes: a key's own route beats the namespace's last redirect;
// forgetting an address drops only routes to it; a full cache starts over.
func TestRoutes(t *testing.T) {
	var r routes
	ka, kb := routeKey("ns", [][]byte{[]byte("{a}:1")}), routeKey("ns", [][]byte{[]byte("b")})
	if got := r.lookup("ns", ka); got != "" {
		t.Fatalf("empty cache: %q", got)
	}
	r.moved("ns", ka, "n1")
	r.moved("ns", kb, "n2")
	for _, tt := range []struct{ ns, key, want string }{
		{"ns", ka, "n1"},
		{"ns", routeKey("ns", [][]byte{[]byte("{a}:2")}), "n1"}, // same hash tag
		{"ns", kb, "n2"},
		{"ns", routeKey("ns", [][]byte{[]byte("c")}), "n2"}, // namespace's last redirect
		{"ns", "", "n2"},
		{"other", routeKey("other", [][]byte{[]byte("{a}:1")}), ""},
	} {
		if got := r.lookup(tt.ns, tt.key); got != tt.want {
			t.Errorf("lookup(%q, %q) = %q, want %q", tt.ns, tt.key, got, tt.want)
		}
	}
	r.forget("ns", kb, "n2")
	if got := r.lookup("ns", kb); got != "" {
		t.Errorf("after forget: %q", got)
	}
	if got := r.lookup("ns", ka); got != "n1" {
		t.Errorf("forget dropped another route: %q", got)
	}
	for i := range maxRoutes {
		r.moved("ns", routeKey("ns", [][]byte{[]byte{byte(i), byte(i >> 8)}}), "n3")
	}
	if n := len(r.byKey); n > maxRoutes {
		t.Errorf("cache holds %d routes, bound %d", n, maxRoutes)
	}
}
