printf 'half done\n' >partial.txt
