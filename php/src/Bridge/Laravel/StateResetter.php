<?php

declare(strict_types=1);

namespace Courser\Bridge\Laravel;

use Illuminate\Contracts\Foundation\Application;

/**
 * Puts a booted Laravel application back in the state it had after boot, so
 * that the next request (maybe another user's) sees nothing of this one.
 *
 * What reset() does, in order (each step only for services the request
 * resolved; the list is in php/README.md):
 *
 *  1. auth: the guards are forgotten (the next request builds new ones, with
 *     no user) with the `request` rebinding callbacks each of them added
 *     (without this every request leaks one guard), `auth.driver` is
 *     dropped, and the user resolver is restored (Auth::shouldUse()
 *     replaces it);
 *  2. session: every session store a request used is flushed, loses its id
 *     and is marked not started (StartSession loads the next client's
 *     session into it by its cookie);
 *  3. cookies queued with Cookie::queue() and not sent;
 *  4. the router's current route and request, and the URL generator's
 *     forced root and scheme, URL::defaults() and format callbacks (the
 *     request itself is replaced by the kernel on the next request, which
 *     rebinds the URL generator, the redirector and the paginator to it);
 *  5. scoped instances ($app->scoped());
 *  6. the view factory: rendering state flushed, shared data (View::share())
 *     back to what it was after boot;
 *  7. log context (Log::withContext()) of every log channel;
 *  8. locale: back to the boot-time locale if a request changed it;
 *  9. config: back to the boot-time values if a request changed any
 *     (checked in O(1) when nothing changed);
 * 10. database: query logs flushed; a transaction left open is rolled back
 *     and reported on STDERR;
 * 11. Str's snake/camel/studly caches when they pass 1,000 entries;
 * 12. the app's own: services tagged `courser.reset` that were resolved get
 *     reset() called, then every callback given to onReset().
 */
final class StateResetter
{
    /** Str caches are emptied when one has more entries than this. */
    private const STR_CACHE_LIMIT = 1000;

    /** @var array<array-key, mixed> */
    private readonly array $config;

    private readonly string $locale;

    /** @var array<string, mixed>|null the view factory's shared data after boot */
    private ?array $viewShared = null;

    /** @var array<string, mixed>|null the URL generator's customisable state after boot */
    private ?array $urlState = null;

    private ?\Closure $userResolver = null;

    /** @var list<callable(Application): void> */
    private array $callbacks = [];

    public function __construct(private readonly Application $app)
    {
        // Resolve what every request would, so the snapshots below are of the booted state.
        foreach (['url', 'view', 'auth'] as $service) {
            if ($app->bound($service)) {
                try {
                    $app->make($service);
                } catch (\Throwable) {
                    // A service that cannot be built (a missing config) is simply not reset.
                }
            }
        }
        $this->config = $app->resolved('config') ? $app['config']->all() : [];
        $this->locale = $app->getLocale();
        if ($app->resolved('view')) {
            $this->viewShared = $app['view']->getShared();
        }
        if ($app->resolved('url')) {
            $this->urlState = (fn (): array => [
                'forcedRoot' => $this->forcedRoot,
                'forceScheme' => $this->forceScheme,
                'assetRoot' => $this->assetRoot,
                'formatHostUsing' => $this->formatHostUsing,
                'formatPathUsing' => $this->formatPathUsing,
                'defaultParameters' => $this->routeGenerator?->defaultParameters ?? [],
            ])->call($app['url']);
        }
        if ($app->resolved('auth')) {
            $resolver = (fn (): mixed => $this->userResolver)->call($app['auth']);
            $this->userResolver = $resolver instanceof \Closure ? $resolver : null;
        }
    }

    /**
     * @param callable(Application): void $callback
     */
    public function onReset(callable $callback): void
    {
        $this->callbacks[] = $callback;
    }

    public function reset(): void
    {
        $app = $this->app;
        // The shared instances, by their abstract name: what the request resolved.
        // One read instead of a resolved() and a make() per service (about 1 µs each).
        $instances = (fn (): array => $this->instances)->call($app);

        if (isset($instances['auth'])) {
            $auth = $instances['auth'];
            $guards = (fn (): array => $this->guards)->call($auth);
            if ($guards !== []) {
                $auth->forgetGuards();
                // Each session guard registered $app->refresh('request', $guard, 'setRequest'):
                // drop those callbacks with their guards, or every request adds one more.
                $this->forgetReboundTargets($guards);
            }
            if ($this->userResolver !== null) {
                $auth->resolveUsersUsing($this->userResolver);
            }
        }
        if (isset($instances['auth.driver'])) {
            $app->forgetInstance('auth.driver');
        }

        if (isset($instances['session'])) {
            $drivers = (fn (): array => $this->drivers)->call($instances['session']);
            foreach ($drivers as $store) {
                // A store no request touched since the last reset is left alone (no new id to draw).
                if ($store->isStarted() || $store->all() !== []) {
                    $store->flush();
                    // No session id survives: StartSession sets the next client's from its cookie,
                    // and code that uses the session without it gets a fresh one.
                    $store->setId(null);
                    (function (): void {
                        $this->started = false;
                    })->call($store);
                }
            }
        }

        if (isset($instances['cookie'])) {
            $instances['cookie']->flushQueuedCookies();
        }

        if (isset($instances['router'])) {
            (function (): void {
                $this->current = null;
                $this->currentRequest = null;
            })->call($instances['router']);
        }
        if ($this->urlState !== null && isset($instances['url'])) {
            $state = $this->urlState;
            (function () use ($state): void {
                $this->forcedRoot = $state['forcedRoot'];
                $this->forceScheme = $state['forceScheme'];
                $this->assetRoot = $state['assetRoot'];
                $this->formatHostUsing = $state['formatHostUsing'];
                $this->formatPathUsing = $state['formatPathUsing'];
                $this->cachedRoot = null;
                $this->cachedScheme = null;
                if ($this->routeGenerator !== null) {
                    $this->routeGenerator->defaultParameters = $state['defaultParameters'];
                }
            })->call($instances['url']);
        }

        if (method_exists($app, 'forgetScopedInstances')) {
            $app->forgetScopedInstances();
        }

        if (isset($instances['view'])) {
            $view = $instances['view'];
            $view->flushState();
            if ($this->viewShared !== null && $view->getShared() !== $this->viewShared) {
                $shared = $this->viewShared;
                (function () use ($shared): void {
                    $this->shared = $shared;
                })->call($view);
            }
        }

        if (isset($instances['log'])) {
            $channels = (fn (): array => $this->channels)->call($instances['log']);
            foreach ($channels as $logger) {
                if (is_object($logger) && method_exists($logger, 'withoutContext')) {
                    $logger->withoutContext();
                }
            }
        }

        if (isset($instances['translator']) && $instances['translator']->getLocale() !== $this->locale) {
            $app->setLocale($this->locale);
        }

        if (isset($instances['config'])) {
            $config = $instances['config'];
            if ($config->all() !== $this->config) {
                $items = $this->config;
                (function () use ($items): void {
                    $this->items = $items;
                })->call($config);
            }
        }

        if (isset($instances['db'])) {
            foreach ($instances['db']->getConnections() as $name => $connection) {
                $connection->flushQueryLog();
                if ($connection->transactionLevel() > 0) {
                    if (defined('STDERR')) {
                        fwrite(STDERR, sprintf(
                            "courser: a request left %d database transaction(s) open on connection \"%s\"; rolled back so the next request starts clean\n",
                            $connection->transactionLevel(),
                            $name,
                        ));
                    }
                    $connection->rollBack(0);
                }
            }
        }

        if (class_exists(\Illuminate\Support\Str::class, false)) {
            (static function (int $limit): void {
                foreach (['snakeCache', 'camelCache', 'studlyCache'] as $cache) {
                    if (count(static::${$cache}) > $limit) {
                        static::${$cache} = [];
                    }
                }
            })->bindTo(null, \Illuminate\Support\Str::class)(self::STR_CACHE_LIMIT);
        }

        $tagged = (fn (): array => $this->tags['courser.reset'] ?? [])->call($app);
        foreach ($tagged as $abstract) {
            if ($app->resolved($abstract)) {
                $service = $app->make($abstract);
                if (is_object($service) && method_exists($service, 'reset')) {
                    $service->reset();
                }
            }
        }

        foreach ($this->callbacks as $callback) {
            $callback($app);
        }
    }

    /**
     * Removes the `request` rebinding callbacks made by
     * $app->refresh('request', $target, $method) for one of $targets.
     *
     * @param array<array-key, mixed> $targets
     */
    private function forgetReboundTargets(array $targets): void
    {
        $ids = [];
        foreach ($targets as $target) {
            if (is_object($target)) {
                $ids[spl_object_id($target)] = true;
            }
        }
        if ($ids === []) {
            return;
        }
        // Guards register refresh() for 'request' only; the other abstracts are left alone.
        (function () use ($ids): void {
            $kept = [];
            foreach ($this->reboundCallbacks['request'] ?? [] as $callback) {
                $target = $callback instanceof \Closure
                    ? ((new \ReflectionFunction($callback))->getStaticVariables()['target'] ?? null)
                    : null;
                if (!is_object($target) || !isset($ids[spl_object_id($target)])) {
                    $kept[] = $callback;
                }
            }
            $this->reboundCallbacks['request'] = $kept;
        })->call($this->app);
    }
}
