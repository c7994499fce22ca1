package manifest

import "strconv"

// lineOf returns the line of a field path (as field.Path prints it:
// spec.template.spec.containers[0].ports[1].name, metadata.labels[app.kubernetes.io/name])
// in the document rooted at root. A path that is not in the document (a required field
// left out) gets the line of the deepest part that is: the container, the mapping.
func lineOf(root *node, path string) int {
	n, line := root, 0
	if root != nil {
		line = root.line
	}
	for _, seg := range splitPath(path) {
		if n == nil {
			break
		}
		switch n.kind {
		case kMap:
			found := false
			for _, e := range n.entries {
				if e.key == seg {
					n, line, found = e.val, e.line, true
					break
				}
			}
			if !found {
				return line
			}
		case kList:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.items) {
				return line
			}
			n = n.items[i]
			line = n.line
		default:
			return line
		}
	}
	return line
}

// splitPath splits a field path into its names, indexes and keys.
func splitPath(path string) []string {
	var segs []string
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			end := i + 1
			for end < len(path) && path[end] != ']' {
				end++
			}
			segs = append(segs, path[i+1:end])
			i = end + 1
		default:
			end := i
			for end < len(path) && path[end] != '.' && path[end] != '[' {
				end++
			}
			segs = append(segs, path[i:end])
			i = end
		}
	}
	return segs
}
