#pragma once
#define BUNKER_VERSION "0.1.0"
