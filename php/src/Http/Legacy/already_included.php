<?php

// What "include_once"/"require_once" include, through Includes::once(), when
// the file was already included: they then return true, as PHP's do.
return true;
