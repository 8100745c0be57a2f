// Template part of daemon_util.h: the shared process flags.
#pragma once

#include <grp.h>
#include <pwd.h>

namespace dc::common {

template <typename ValueFn>
FlagParse parse_process_flag(const std::string& flag, ValueFn&& value, ProcessOptions& o,
                             std::string& err) {
  std::string v;
  if (flag == "-daemon") {
    o.daemon = true;
  } else if (flag == "-pidfile") {
    if (!value(o.pidfile)) return FlagParse::error;
    if (o.pidfile.empty()) {
      err = "-pidfile: empty path";
      return FlagParse::error;
    }
  } else if (flag == "-user" || flag == "-sockowner") {
    std::string& user = flag == "-user" ? o.user : o.sockowner;
    if (!value(user)) return FlagParse::error;
    if (!getpwnam(user.c_str())) {
      err = flag + ": no such user \"" + user + "\"";
      return FlagParse::error;
    }
  } else if (flag == "-sockgroup") {
    if (!value(o.sockgroup)) return FlagParse::error;
    if (!getgrnam(o.sockgroup.c_str())) {
      err = "-sockgroup: no such group \"" + o.sockgroup + "\"";
      return FlagParse::error;
    }
  } else if (flag == "-sockperms") {
    if (!value(v)) return FlagParse::error;
    if (!parse_mode(v, o.sockperms)) {
      err = "-sockperms: \"" + v + "\" is not an octal mode (e.g. 0660)";
      return FlagParse::error;
    }
  } else {
    return FlagParse::not_mine;
  }
  return FlagParse::ok;
}

}  // namespace dc::common
