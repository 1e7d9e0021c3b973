printf 'Hello, moon!\n' >>hello.txt
