// The build's version, for `--version` on every executable: the project version from
// CMakeLists.txt and the git commit the build was configured from (version.cc.in).
#pragma once

namespace longtail::tools {

// "0.1.0 (commit 1a2b3c4d5e6f)"; "+dirty" when the tree had uncommitted changes at configure time;
// "unknown" commit outside a git checkout.
const char* version_string();

}  // namespace longtail::tools
