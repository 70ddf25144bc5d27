// Command squeeze is the model compression compiler's command line: one
// file per command, each with an options struct, a constructor that binds
// its flags, and a run function that takes the options and io.Writers so
// tests call it directly.
package main
