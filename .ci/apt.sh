# Sourced by the .ci/install_*.sh scripts. Usage: require_root <script name>; apt_install <script name> <package>...
require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$1: must run as root" >&2
        exit 1
    fi
}

apt_install() {
    require_root "$1"
    shift
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@"
}
