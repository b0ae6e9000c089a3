.PHONY: all
all:
	@true
