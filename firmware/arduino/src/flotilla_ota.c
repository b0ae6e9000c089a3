/* The portable core, compiled as part of this library (Arduino compiles only src/). Used from
 * the Flotilla repository, it is the same file as firmware/client/src/flotilla_ota.c. */
#include "../../client/src/flotilla_ota.c"
