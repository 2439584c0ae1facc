package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// CommandDoc documents one command for `help`: its syntax after the name,
// a one-line summary and its group (as redis-cli's `help @group`).
type CommandDoc struct {
	Name    string
	Args    string
	Summary string
	Group   string
}

// Groups in the order `help` lists them.
var groupOrder = []string{"string", "generic", "list", "set", "hash", "sorted-set", "scan", "index", "transaction", "pubsub", "namespace", "connection", "cli"}

// commandDocs is the help table. It lists the commands of the core data
// model (package core) plus the CLI's own commands (group "cli"); the
// server, not this table, decides what a command accepts.
func commandDocs() []CommandDoc {
	return []CommandDoc{
		// strings and numbers
		{"GET", "key", "Get the value of a key", "string"},
		{"SET", "key value [NX|XX] [GET] [EX seconds|PX milliseconds|KEEPTTL]", "Set the string value of a key", "string"},
		{"GETSET", "key value", "Set the value of a key and return its old value", "string"},
		{"GETDEL", "key", "Get the value of a key and delete the key", "string"},
		{"APPEND", "key value", "Append a value to a key", "string"},
		{"STRLEN", "key", "Get the length of the value stored in a key", "string"},
		{"MGET", "key [key ...]", "Get the values of all the given keys", "string"},
		{"MSET", "key value [key value ...]", "Set multiple keys to multiple values", "string"},
		{"MSETNX", "key value [key value ...]", "Set multiple keys to multiple values, only if none of the keys exist", "string"},
		{"INCR", "key", "Increment the integer value of a key by one", "string"},
		{"INCRBY", "key increment", "Increment the integer value of a key by the given amount", "string"},
		{"DECR", "key", "Decrement the integer value of a key by one", "string"},
		{"DECRBY", "key decrement", "Decrement the integer value of a key by the given number", "string"},
		{"INCRBYFLOAT", "key increment", "Increment the float value of a key by the given amount", "string"},
		{"CAS", "key expected-version value", "Set a key's value only if its version is expected-version (0: the key is absent)", "string"},
		{"SETNX", "key value", "Set the value of a key, only if the key does not exist", "string"},
		{"SETEX", "key seconds value", "Set the value and expiration of a key", "string"},
		{"PSETEX", "key milliseconds value", "Set the value and expiration in milliseconds of a key", "string"},
		// keys
		{"DEL", "key [key ...]", "Delete keys", "generic"},
		{"EXISTS", "key [key ...]", "Count how many of the given keys exist", "generic"},
		{"TYPE", "key", "Determine the type stored at key", "generic"},
		{"EXPIRE", "key seconds", "Set a key's time to live in seconds", "generic"},
		{"PEXPIRE", "key milliseconds", "Set a key's time to live in milliseconds", "generic"},
		{"PERSIST", "key", "Remove the expiration from a key", "generic"},
		{"TTL", "key", "Get the time to live for a key in seconds", "generic"},
		{"PTTL", "key", "Get the time to live for a key in milliseconds", "generic"},
		{"UNLINK", "key [key ...]", "Delete keys (same as DEL)", "generic"},
		{"EXPIREAT", "key unix-time-seconds", "Set the expiration for a key as a UNIX timestamp", "generic"},
		{"PEXPIREAT", "key unix-time-milliseconds", "Set the expiration for a key as a UNIX timestamp in milliseconds", "generic"},
		{"VERSION", "key", "Get the version of a key (0 when absent), for CAS and transaction conditions", "generic"},
		// lists
		{"LPUSH", "key element [element ...]", "Prepend one or multiple elements to a list", "list"},
		{"RPUSH", "key element [element ...]", "Append one or multiple elements to a list", "list"},
		{"LPOP", "key [count]", "Remove and get the first elements in a list", "list"},
		{"RPOP", "key [count]", "Remove and get the last elements in a list", "list"},
		{"LRANGE", "key start stop", "Get a range of elements from a list", "list"},
		{"LLEN", "key", "Get the length of a list", "list"},
		{"LINDEX", "key index", "Get an element from a list by its index", "list"},
		{"LSET", "key index element", "Set the value of an element in a list by its index", "list"},
		{"LREM", "key count element", "Remove elements from a list", "list"},
		{"LTRIM", "key start stop", "Trim a list to the specified range", "list"},
		{"LPUSHX", "key element [element ...]", "Prepend elements to a list, only if the list exists", "list"},
		{"RPUSHX", "key element [element ...]", "Append elements to a list, only if the list exists", "list"},
		// sets
		{"SADD", "key member [member ...]", "Add one or more members to a set", "set"},
		{"SREM", "key member [member ...]", "Remove one or more members from a set", "set"},
		{"SMEMBERS", "key", "Get all the members in a set", "set"},
		{"SISMEMBER", "key member", "Determine if a given value is a member of a set", "set"},
		{"SCARD", "key", "Get the number of members in a set", "set"},
		{"SINTER", "key [key ...]", "Intersect multiple sets", "set"},
		{"SUNION", "key [key ...]", "Add multiple sets", "set"},
		{"SDIFF", "key [key ...]", "Subtract multiple sets", "set"},
		{"SINTERSTORE", "destination key [key ...]", "Intersect multiple sets and store the resulting set in a key", "set"},
		{"SUNIONSTORE", "destination key [key ...]", "Add multiple sets and store the resulting set in a key", "set"},
		{"SDIFFSTORE", "destination key [key ...]", "Subtract multiple sets and store the resulting set in a key", "set"},
		{"SMISMEMBER", "key member [member ...]", "Returns the membership associated with the given elements for a set", "set"},
		// hashes
		{"HSET", "key field value [field value ...]", "Set the string value of hash fields", "hash"},
		{"HGET", "key field", "Get the value of a hash field", "hash"},
		{"HMGET", "key field [field ...]", "Get the values of all the given hash fields", "hash"},
		{"HDEL", "key field [field ...]", "Delete one or more hash fields", "hash"},
		{"HGETALL", "key", "Get all the fields and values in a hash", "hash"},
		{"HINCRBY", "key field increment", "Increment the integer value of a hash field by the given number", "hash"},
		{"HINCRBYFLOAT", "key field increment", "Increment the float value of a hash field by the given amount", "hash"},
		{"HEXISTS", "key field", "Determine if a hash field exists", "hash"},
		{"HLEN", "key", "Get the number of fields in a hash", "hash"},
		{"HKEYS", "key", "Get all the fields in a hash", "hash"},
		{"HVALS", "key", "Get all the values in a hash", "hash"},
		{"HMSET", "key field value [field value ...]", "Set multiple hash fields to multiple values", "hash"},
		{"HSETNX", "key field value", "Set the value of a hash field, only if the field does not exist", "hash"},
		{"HSTRLEN", "key field", "Get the length of the value of a hash field", "hash"},
		// sorted sets
		{"ZADD", "key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]", "Add one or more members to a sorted set, or update their scores", "sorted-set"},
		{"ZREM", "key member [member ...]", "Remove one or more members from a sorted set", "sorted-set"},
		{"ZSCORE", "key member", "Get the score associated with the given member in a sorted set", "sorted-set"},
		{"ZINCRBY", "key increment member", "Increment the score of a member in a sorted set", "sorted-set"},
		{"ZRANK", "key member", "Determine the index of a member in a sorted set", "sorted-set"},
		{"ZREVRANK", "key member", "Determine the index of a member in a sorted set, with scores ordered from high to low", "sorted-set"},
		{"ZCARD", "key", "Get the number of members in a sorted set", "sorted-set"},
		{"ZCOUNT", "key min max", "Count the members in a sorted set with scores within the given values", "sorted-set"},
		{"ZRANGE", "key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]", "Return a range of members in a sorted set", "sorted-set"},
		{"ZPOPMIN", "key [count]", "Remove and return members with the lowest scores in a sorted set", "sorted-set"},
		{"ZPOPMAX", "key [count]", "Remove and return members with the highest scores in a sorted set", "sorted-set"},
		{"ZREVRANGE", "key start stop [WITHSCORES]", "Return a range of members in a sorted set, by index, with scores ordered from high to low", "sorted-set"},
		{"ZRANGEBYSCORE", "key min max [WITHSCORES] [LIMIT offset count]", "Return a range of members in a sorted set, by score", "sorted-set"},
		{"ZREVRANGEBYSCORE", "key max min [WITHSCORES] [LIMIT offset count]", "Return a range of members in a sorted set, by score, with scores ordered from high to low", "sorted-set"},
		{"ZRANGEBYLEX", "key min max [LIMIT offset count]", "Return a range of members in a sorted set, by lexicographical range", "sorted-set"},
		{"ZREVRANGEBYLEX", "key max min [LIMIT offset count]", "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings", "sorted-set"},
		{"ZLEXCOUNT", "key min max", "Count the members in a sorted set between a given lexicographical range", "sorted-set"},
		{"ZMSCORE", "key member [member ...]", "Get the score associated with the given members in a sorted set", "sorted-set"},
		// scans
		{"SCAN.PREFIX", "prefix cursor [COUNT n]", "Keys with a prefix in key order, one page at a time: replies [next-cursor, [keys]]; start with cursor \"\", \"\" comes back at the end", "scan"},
		{"SCAN.RANGE", "start end cursor [COUNT n]", "Keys in [start, end) in key order (end \"\": unbounded), one page at a time: replies [next-cursor, [keys]]", "scan"},
		// secondary indexes
		{"IDX.CREATE", "name ON HASH PREFIX prefix FIELD field TYPE string|number", "Create a secondary index on a field of the hashes under a key prefix (back-fills existing data)", "index"},
		{"IDX.DROP", "name", "Drop a secondary index", "index"},
		{"IDX.LIST", "", "List the secondary indexes", "index"},
		{"IDX.QUERY", "name EQ value|RANGE min max [LIMIT n] [CURSOR c]", "Keys whose indexed field equals value or lies in the range (number: ZRANGEBYSCORE syntax; string: ZRANGEBYLEX syntax): replies [next-cursor, [keys]]", "index"},
		// transactions (queued by the CLI, sent as one atomic transaction)
		{"MULTI", "", "Start a transaction: the following commands are queued until EXEC", "transaction"},
		{"EXEC", "", "Run the queued commands atomically; fails with CONDFAILED (nothing applied) if a WATCHed key changed", "transaction"},
		{"DISCARD", "", "Drop the queued commands", "transaction"},
		{"WATCH", "key [key ...]", "Make the next transaction conditional on these keys keeping their current versions", "transaction"},
		{"UNWATCH", "", "Forget the WATCHed keys", "transaction"},
		// pub/sub
		{"PUBLISH", "channel message", "Post a message to a channel; replies the number of subscriptions that received it", "pubsub"},
		{"SUBSCRIBE", "channel [channel ...]", "Listen for messages published to channels (Ctrl-C to stop)", "pubsub"},
		{"PSUBSCRIBE", "pattern [pattern ...]", "Listen for messages published to channels matching glob patterns (Ctrl-C to stop)", "pubsub"},
		// namespaces
		{"NAMESPACE", "CREATE name strategy [param value ...] | DROP name | LIST", "Create, drop or list namespaces (strategy: local now; raft, quorum, causal as they land)", "namespace"},
		{"CLUSTER", "MEMBERS", "List the cluster's members: ID STATE (alive, down, unknown) and addresses, as gossip sees them", "namespace"},
		// connection
		{"PING", "[message]", "Ask the node whether it is alive: PONG, or the message", "connection"},
		// CLI-side commands
		{"HELP", "[command|@group]", "Show the commands, one command's syntax, or a group's commands", "cli"},
		{"USE", "namespace", "Run the following commands in another namespace (\"\" for the default)", "cli"},
		{"QUIT", "", "Leave the interactive CLI (also EXIT)", "cli"},
		{"CLEAR", "", "Clear the screen", "cli"},
	}
}

// lookupDoc finds a command's documentation by name (case-insensitive).
func lookupDoc(name string) (CommandDoc, bool) {
	name = strings.ToUpper(name)
	for _, d := range commandDocs() {
		if d.Name == name {
			return d, true
		}
	}
	return CommandDoc{}, false
}

// writeHelp answers `help`, `help COMMAND` and `help @group` in redis-cli's
// layout.
func writeHelp(w io.Writer, args []string) {
	if len(args) == 0 {
		fmt.Fprintln(w, "dialkv cli")
		fmt.Fprintln(w, `To get help about a command:`)
		fmt.Fprintln(w, `      "help <command>" (for example "help SET")`)
		fmt.Fprintln(w, `To get a list of the commands of a group:`)
		fmt.Fprintf(w, "      \"help @<group>\" (groups: %s)\n", strings.Join(groupOrder, ", "))
		fmt.Fprintln(w, `To quit: "quit" or "exit"`)
		fmt.Fprintln(w, "\nCommands:")
		byGroup := map[string][]string{}
		for _, d := range commandDocs() {
			byGroup[d.Group] = append(byGroup[d.Group], d.Name)
		}
		for _, g := range groupOrder {
			if names := byGroup[g]; len(names) > 0 {
				fmt.Fprintf(w, "  @%-12s %s\n", g, strings.Join(names, " "))
			}
		}
		return
	}
	first := args[0]
	if strings.HasPrefix(first, "@") {
		g := strings.ToLower(first[1:])
		found := false
		for _, d := range commandDocs() {
			if d.Group == g {
				found = true
				writeDoc(w, d)
			}
		}
		if !found {
			fmt.Fprintf(w, "No such group %q (groups: %s)\n", first, strings.Join(groupOrder, ", "))
		}
		return
	}
	d, ok := lookupDoc(strings.Join(args, " "))
	if !ok {
		d, ok = lookupDoc(first)
	}
	if !ok {
		fmt.Fprintf(w, "No help for %q. Try \"help\" for the list of commands; the server may still know it.\n", first)
		if s := suggest(first); len(s) > 0 {
			fmt.Fprintf(w, "Did you mean: %s\n", strings.Join(s, " "))
		}
		return
	}
	writeDoc(w, d)
}

func writeDoc(w io.Writer, d CommandDoc) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %s %s\n", d.Name, d.Args)
	fmt.Fprintf(w, "  summary: %s\n", d.Summary)
	fmt.Fprintf(w, "  group: %s\n", d.Group)
	fmt.Fprintln(w)
}

// suggest returns command names sharing the first two letters of name.
func suggest(name string) []string {
	name = strings.ToUpper(name)
	if len(name) < 2 {
		return nil
	}
	var out []string
	for _, d := range commandDocs() {
		if strings.HasPrefix(d.Name, name[:2]) {
			out = append(out, d.Name)
		}
	}
	sort.Strings(out)
	return out
}

// completer lists command names for tab completion.
func commandNames() []string {
	docs := commandDocs()
	out := make([]string, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.Name)
	}
	return out
}

// clientSide reports whether a group's commands are run by the CLI (or
// through typed API calls) rather than sent to core as commands.
func clientSide(group string) bool {
	switch group {
	case "cli", "transaction", "pubsub", "namespace", "connection":
		return true
	}
	return false
}
