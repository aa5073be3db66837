<?php
// Builds the application without Composer: Debian's php-laravel-framework
// autoloader, a PSR-4 loader for App\, and the three core bindings.
// Shared by worker.php (Courser, booted once per worker) and
// public/index.php (PHP-FPM, booted once per request).
declare(strict_types=1);

require_once '/usr/share/php/Illuminate/autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        $file = __DIR__ . '/../app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

$app = new Illuminate\Foundation\Application(dirname(__DIR__));

// APP_STORAGE moves sessions, compiled views and logs out of the source tree
// with the package and service manifests that Laravel otherwise writes to
// bootstrap/cache (tests and the benchmark point it at a temporary directory).
if (($storage = getenv('APP_STORAGE')) !== false && $storage !== '') {
    $app->useStoragePath($storage);
    foreach (['framework/sessions', 'framework/views', 'framework/cache', 'logs'] as $dir) {
        if (!is_dir("$storage/$dir")) {
            @mkdir("$storage/$dir", 0700, true);
        }
    }
    foreach (['APP_PACKAGES_CACHE' => 'packages.php', 'APP_SERVICES_CACHE' => 'services.php'] as $name => $file) {
        $_SERVER[$name] = $_ENV[$name] = "$storage/$file";
    }
}

$app->singleton(Illuminate\Contracts\Http\Kernel::class, App\Http\Kernel::class);
$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, App\Exceptions\Handler::class);

return $app;
