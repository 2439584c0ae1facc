package client

// ShardOfForTest exposes shardOf to the external tests.
var ShardOfForTest = shardOf
