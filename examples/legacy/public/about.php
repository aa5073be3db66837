<?php
header('Content-Type: text/plain');
echo "This is ", $_SERVER['SCRIPT_NAME'], ", a second script in the document root.\n";
echo 'PHP_SAPI says ', PHP_SAPI, "; the worker runs the CLI.\n";
