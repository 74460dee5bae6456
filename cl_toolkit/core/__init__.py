"""The foundation every layer uses: errors, atomic files, the workspace, YAML reading, secret scanning, semver, time."""
