module example.com/own
