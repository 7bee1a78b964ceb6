package greet

// Hello returns a greeting.
func Hello(who string) string { return "hello from " + who }
