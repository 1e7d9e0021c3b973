printf 'Hello, world!\n' >hello.txt
