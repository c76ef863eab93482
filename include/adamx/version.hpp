// adamx release version; CMakeLists.txt reads these three numbers to set the project version.
#ifndef ADAMX_VERSION_HPP
#define ADAMX_VERSION_HPP

#define ADAMX_VERSION_MAJOR 0
#define ADAMX_VERSION_MINOR 1
#define ADAMX_VERSION_PATCH 0

#endif  // ADAMX_VERSION_HPP
