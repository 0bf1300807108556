print("vfsvm")
